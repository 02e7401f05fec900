//! RESP2/RESP3 reply writer over a `BytesMut`.
//!
//! Commands write replies through [`Reply`], which knows the connection's
//! protocol version so one handler serves both:
//!
//! ```text
//!             RESP2            RESP3
//! null        $-1\r\n          _\r\n
//! null array  *-1\r\n          _\r\n
//! map n       *<2n>\r\n        %<n>\r\n
//! double      $<len>\r\n1.5    ,1.5\r\n
//! set n       *<n>\r\n         ~<n>\r\n
//! push n      *<n>\r\n         ><n>\r\n
//! ```

use bytes::{BufMut, BytesMut};

/// Error replies written, process-wide (INFO's `total_error_replies`).
/// One relaxed add per error: errors are the rare reply.
pub static ERROR_REPLIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Errors a replica's commands from its master answered with (INFO's
/// `unexpected_error_replies`): each one means the datasets diverged.
pub static UNEXPECTED_ERROR_REPLIES: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Protocol version negotiated with HELLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Resp2,
    Resp3,
}

/// A reply sink: the output buffer plus the connection's protocol.
pub struct Reply<'a> {
    pub out: &'a mut BytesMut,
    pub proto: Proto,
}

impl<'a> Reply<'a> {
    pub fn new(out: &'a mut BytesMut, proto: Proto) -> Self {
        Reply { out, proto }
    }

    fn header(&mut self, tag: u8, n: i64) {
        self.out.put_u8(tag);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    pub fn simple(&mut self, s: &str) {
        self.out.put_u8(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error; `msg` includes its code (`ERR ...`, `WRONGTYPE ...`).
    /// Newlines would break the framing, so they become spaces as in Redis.
    pub fn error(&mut self, msg: &str) {
        ERROR_REPLIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::cmd::stats::error(msg);
        self.out.put_u8(b'-');
        for &b in msg.as_bytes() {
            self.out
                .put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, b: &[u8]) {
        self.header(b'$', b.len() as i64);
        self.out.extend_from_slice(b);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn bulk_opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => self.bulk(b),
            None => self.null(),
        }
    }

    pub fn bulk_int(&mut self, n: i64) {
        self.bulk(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A verbatim/plain text bulk (INFO, CLIENT LIST); RESP3 would allow
    /// `=` verbatim strings, but Redis 7.0 only uses them for a few
    /// commands and clients accept plain bulks everywhere.
    pub fn text(&mut self, s: &str) {
        self.bulk(s.as_bytes());
    }

    pub fn null(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Proto::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn null_array(&mut self) {
        match self.proto {
            Proto::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Proto::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    pub fn set_header(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', n as i64),
            Proto::Resp3 => self.header(b'~', n as i64),
        }
    }

    pub fn map(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', 2 * n as i64),
            Proto::Resp3 => self.header(b'%', n as i64),
        }
    }

    pub fn push(&mut self, n: usize) {
        match self.proto {
            Proto::Resp2 => self.header(b'*', n as i64),
            Proto::Resp3 => self.header(b'>', n as i64),
        }
    }

    pub fn boolean(&mut self, v: bool) {
        match self.proto {
            Proto::Resp2 => self.int(v as i64),
            Proto::Resp3 => self
                .out
                .extend_from_slice(if v { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// A double, formatted as Redis's `%.17g` shortest round-trip form.
    pub fn double(&mut self, v: f64) {
        let s = format_double(v);
        match self.proto {
            Proto::Resp2 => self.bulk(s.as_bytes()),
            Proto::Resp3 => {
                self.out.put_u8(b',');
                self.out.extend_from_slice(s.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// An array of status lines (the HELP replies).
    pub fn lines(&mut self, lines: &[&str]) {
        self.array(lines.len());
        for l in lines {
            self.simple(l);
        }
    }

    /// Raw pre-encoded RESP (a reply produced on another shard).
    pub fn raw(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
}

/// Formats a double as Redis 7.0 does for replies (`%.17g`: `inf`,
/// `1.1000000000000001`, `1e+17`, `-0`); shared with the zset code.
pub fn format_double(v: f64) -> String {
    crate::cmd::zset::format_score(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_and_resp3_nulls_and_maps() {
        let mut b = BytesMut::new();
        let mut r = Reply::new(&mut b, Proto::Resp2);
        r.null();
        r.map(1);
        r.double(1.5);
        assert_eq!(&b[..], b"$-1\r\n*2\r\n$3\r\n1.5\r\n");
        let mut b = BytesMut::new();
        let mut r = Reply::new(&mut b, Proto::Resp3);
        r.null();
        r.map(1);
        r.double(1.5);
        assert_eq!(&b[..], b"_\r\n%1\r\n,1.5\r\n");
    }

    #[test]
    fn errors_lose_newlines() {
        let mut b = BytesMut::new();
        Reply::new(&mut b, Proto::Resp2).error("ERR a\nb");
        assert_eq!(&b[..], b"-ERR a b\r\n");
    }
}
