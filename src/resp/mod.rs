//! RESP wire protocol: an incremental, zero-copy request parser and a reply
//! writer. Knows nothing of the keyspace; runs on whichever shard owns the
//! connection and is fuzzed and benched alone.

mod parser;
mod writer;

pub use parser::{
    Arg, ParseError, ParseLimits, Resume, parse_command, parse_command_into,
    parse_command_resumable,
};
pub use writer::{ERROR_REPLIES, Proto, Reply, UNEXPECTED_ERROR_REPLIES};
