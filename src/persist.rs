//! Persistence: RDB snapshots on disk. SAVE, BGSAVE, the `save <secs>
//! <changes>` schedule, the final save of SHUTDOWN (and of SIGTERM /
//! SIGINT), DEBUG RELOAD, INFO's persistence section, and the load at
//! start-up.
//!
//! Who runs what:
//!
//! - The shard that receives SAVE / BGSAVE coordinates the save: it takes a
//!   snapshot ([`snapshot_bytes`]) and hands the bytes to a one-off writer
//!   thread, so no file I/O runs on an executor. SAVE answers when the file
//!   is durable; BGSAVE answers at once and the save runs as a task.
//! - Shard 0 runs the [`cron`]: the `save` schedule, a BGSAVE scheduled from
//!   inside EXEC, and the shutdown a signal asked for.
//! - `main` loads the file before any executor starts ([`load_at_startup`]):
//!   the main thread parses and routes every key to a builder thread per
//!   shard, and each shard adopts its prebuilt keyspace as it starts
//!   ([`on_shard_start`]).
//!
//! The file is written the way Redis writes it, so a crash at any point
//! leaves either the old file or the new one:
//!
//! ```text
//! <dir>/temp-<pid>.rdb        create, write, fsync
//! rename to <dir>/<dbfilename>, fsync <dir>
//! ```
//!
//! Changes since the last save (Redis's `server.dirty`) are counted per
//! shard in [`PersistState`]: each shard bumps only its own cache-line
//! padded slot from `Shard::key_modified`, so counting costs a plain store
//! on the write path, and the cron and INFO sum the slots without messages.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cmd::{ClientState, SYNTAX, eq_ic};
use crate::rdb::{
    Crc64, Event, Loader, WriteOptions, default_aux, write_entry_with, write_footer, write_header,
    write_select_db,
};
use crate::resp::Reply;
use crate::shard::dispatch::Tx;
use crate::shard::keyspace::{Entry, Keyspace};
use crate::shard::{Msg, Op, OpReply, Shard, Shared, now_ms, shard_of};

/// Redis's `CONFIG_BGSAVE_RETRY_DELAY`: after a failed save the schedule
/// waits this long before trying again.
const RETRY_DELAY_SECS: u64 = 5;

/// How often shard 0 checks the save schedule (Redis's serverCron at hz 10).
const CRON_PERIOD: Duration = Duration::from_millis(100);

/// Keys sent from the parser to a shard's builder thread at a time.
const LOAD_BATCH: usize = 1024;

/// `saving` states.
const IDLE: u8 = 0;
const FOREGROUND: u8 = 1;
const BACKGROUND: u8 = 2;

/// One shard's change counter, alone on its cache lines so shards never
/// contend for them.
#[repr(align(128))]
#[derive(Default)]
struct DirtySlot(AtomicU64);

/// Persistence state shared by every shard (one per process, in `Shared`).
pub struct PersistState {
    /// Modifications per shard since start; written only by the owner.
    dirty: Box<[DirtySlot]>,
    /// Sum of `dirty` covered by the last successful save.
    saved_dirty: AtomicU64,
    /// IDLE, FOREGROUND (SAVE, SHUTDOWN, DEBUG RELOAD) or BACKGROUND.
    saving: AtomicU8,
    /// Unix ms a shutdown waiting for its replicas gives up (0 = none
    /// waiting): INFO's `shutdown_in_milliseconds`.
    pub shutdown_deadline_ms: AtomicU64,
    /// A BGSAVE was asked for inside EXEC: the cron starts it.
    bgsave_scheduled: AtomicBool,
    /// Unix ms when the running BGSAVE started.
    bgsave_started_ms: AtomicU64,
    /// Outcome and duration (-1 = none yet) of the last BGSAVE.
    last_bgsave_ok: AtomicBool,
    last_bgsave_secs: AtomicI64,
    /// Unix seconds of the last BGSAVE attempt (Redis's `lastbgsave_try`).
    last_try_secs: AtomicU64,
    /// SAVE and BGSAVE runs (INFO `rdb_saves`).
    saves: AtomicU64,
    /// What the start-up (or DEBUG RELOAD) load found.
    loaded_keys: AtomicU64,
    loaded_expired: AtomicU64,
    /// Keyspaces built at start-up, taken by each shard as it starts.
    preload: Mutex<Vec<Option<Keyspace>>>,
    /// `repl-id` and `repl-offset` of the loaded file, for replication.
    loaded_repl: Mutex<Option<(String, i64, i64)>>,
    /// A termination signal waiting to be handled by the cron (0 = none).
    signal: AtomicI32,
    /// A shutdown waiting for its replicas: `WAIT_IDLE`, `WAIT_ON`,
    /// `WAIT_ABORT` once SHUTDOWN ABORT asked it to stop, `WAIT_DONE` once
    /// it goes on to exit (too late to abort).
    shutdown_wait: AtomicU8,
}

const WAIT_IDLE: u8 = 0;
const WAIT_ON: u8 = 1;
const WAIT_ABORT: u8 = 2;
const WAIT_DONE: u8 = 3;

impl PersistState {
    pub fn new(nshards: usize) -> PersistState {
        PersistState {
            dirty: (0..nshards).map(|_| DirtySlot::default()).collect(),
            saved_dirty: AtomicU64::new(0),
            saving: AtomicU8::new(IDLE),
            shutdown_deadline_ms: AtomicU64::new(0),
            bgsave_scheduled: AtomicBool::new(false),
            bgsave_started_ms: AtomicU64::new(0),
            last_bgsave_ok: AtomicBool::new(true),
            last_bgsave_secs: AtomicI64::new(-1),
            last_try_secs: AtomicU64::new(0),
            saves: AtomicU64::new(0),
            loaded_keys: AtomicU64::new(0),
            loaded_expired: AtomicU64::new(0),
            preload: Mutex::new((0..nshards).map(|_| None).collect()),
            loaded_repl: Mutex::new(None),
            signal: AtomicI32::new(0),
            shutdown_wait: AtomicU8::new(WAIT_IDLE),
        }
    }

    /// Counts `n` modifications on `shard`. Only that shard's thread calls
    /// this, so a load and a store suffice (no read-modify-write).
    #[inline]
    pub fn bump(&self, shard: usize, n: u64) {
        let slot = &self.dirty[shard].0;
        slot.store(slot.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Changes counted so far on every shard.
    pub fn dirty_total(&self) -> u64 {
        self.dirty.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    /// INFO `rdb_changes_since_last_save`.
    pub fn changes_since_save(&self) -> u64 {
        self.dirty_total()
            .saturating_sub(self.saved_dirty.load(Ordering::Relaxed))
    }

    /// Whether a BGSAVE is running (INFO `rdb_bgsave_in_progress`).
    pub fn bgsave_in_progress(&self) -> bool {
        self.saving.load(Ordering::SeqCst) == BACKGROUND
    }

    /// The replication id, offset and stream db recorded in the loaded
    /// RDB, if any.
    pub fn loaded_repl(&self) -> Option<(String, i64, i64)> {
        self.loaded_repl
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn claim(&self, kind: u8) -> Result<(), u8> {
        self.saving
            .compare_exchange(IDLE, kind, Ordering::SeqCst, Ordering::SeqCst)
            .map(|_| ())
    }

    /// Waits until no save runs, then claims a foreground one.
    async fn claim_foreground_wait(&self) -> SavingGuard<'_> {
        while self.claim(FOREGROUND).is_err() {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        SavingGuard(self)
    }
}

/// Clears `saving` when a save ends, however it ends.
struct SavingGuard<'a>(&'a PersistState);

impl Drop for SavingGuard<'_> {
    fn drop(&mut self) {
        self.0.saving.store(IDLE, Ordering::SeqCst);
    }
}

fn unix_secs() -> u64 {
    now_ms() / 1000
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

/// The whole dataset as an RDB file (header, every shard's part, footer,
/// CRC), equal to the dataset at one instant while writes go on: the
/// copy-on-write snapshot of `repl::snapshot` (a cut under every shard's
/// lock, then serialise-before-write), so writes never wait for it.
pub async fn snapshot_bytes(shard: &Rc<Shard>) -> Vec<u8> {
    let t0 = Instant::now();
    let snap =
        crate::repl::snapshot::Snapshot::begin(shard, crate::repl::snapshot::Purpose::Persistence)
            .await;
    let (out, _) = snap.collect(shard).await;
    log::debug!("RDB snapshot: {} bytes in {:?}", out.len(), t0.elapsed());
    out
}

/// Every shard's serialised part, the remote ones produced in parallel on
/// their own cores. The caller holds `tx` on every shard.
async fn collect_parts(shard: &Rc<Shard>, tx: &Tx) -> Vec<Vec<u8>> {
    let n = shard.nshards();
    let mut remote = Vec::new();
    for s in (0..n).filter(|&s| s != shard.id) {
        let (me, txid) = (shard.clone(), tx.id);
        remote.push((
            s,
            glommio::spawn_local(async move {
                let from = me.id;
                me.request(s, |id| Msg::Op {
                    from,
                    id,
                    tx: Some(txid),
                    op: Op::RdbPart,
                })
                .await
            }),
        ));
    }
    // Let the request tasks send before this core serialises its own part.
    futures_lite::future::yield_now().await;
    let mut parts = vec![Vec::new(); n];
    parts[shard.id] = serialize_part(shard);
    for (s, task) in remote {
        match task.await {
            OpReply::Bytes(b) => parts[s] = b,
            other => unreachable!("RDB part answered with {other:?}"),
        }
    }
    parts
}

/// This shard's keys as RDB sections (`SELECTDB` + `RESIZEDB` + entries per
/// non-empty database). Keys whose TTL passed are written too, as Redis
/// 7.0 writes them: the loader decides (a master drops them, a replica
/// keeps them for its master's DEL). Runs on the owning shard (the
/// `Op::RdbPart` handler) under the transaction lock.
pub fn serialize_part(shard: &Shard) -> Vec<u8> {
    let opts = WriteOptions {
        compress: shard
            .shared
            .config()
            .get_bool("rdbcompression")
            .unwrap_or(true),
    };
    let ks = shard.ks.borrow();
    let mut out = Vec::new();
    for (i, db) in ks.dbs.iter().enumerate() {
        if db.is_empty() {
            continue;
        }
        write_select_db(&mut out, i as u64, db.len() as u64, db.expires_len() as u64);
        for (k, e) in db.iter() {
            write_entry_with(&mut out, k, e, opts);
        }
    }
    out
}

/// Header + parts + footer + CRC-64 (0 with `rdbchecksum no`, as Redis).
fn assemble(shared: &Shared, parts: Vec<Vec<u8>>) -> Vec<u8> {
    assemble_with(shared, parts, None)
}

/// [`assemble`] with the replication fields in the header.
fn assemble_with(
    shared: &Shared,
    parts: Vec<Vec<u8>>,
    repl: Option<&crate::rdb::ReplInfo>,
) -> Vec<u8> {
    let checksum = shared.config().get_bool("rdbchecksum").unwrap_or(true);
    let aux = default_aux(unix_secs(), rss_bytes(), repl);
    let body: usize = parts.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(body + 256);
    write_header(&mut out, &aux);
    for p in parts {
        out.extend_from_slice(&p);
    }
    write_footer(&mut out);
    let crc = if checksum { Crc64::checksum(&out) } else { 0 };
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

// ---------------------------------------------------------------------------
// Writing the file
// ---------------------------------------------------------------------------

/// `dir` and `dbfilename` as configured now.
fn target(shared: &Shared) -> (PathBuf, String) {
    let c = shared.config();
    (PathBuf::from(c.dir()), c.dbfilename().to_string())
}

fn temp_name() -> String {
    format!("temp-{}.rdb", std::process::id())
}

/// An OS error as `strerror` words it ("No such file or directory").
fn os_error(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Writes `bytes` to `dir/temp-<pid>.rdb`, fsyncs it, renames it over
/// `dir/name` and fsyncs the directory. Blocking: runs on a writer thread.
/// Errors are worded like Redis's log lines.
pub fn write_rdb_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp_name = temp_name();
    let tmp = dir.join(&tmp_name);
    let shown_dir = dir.display();
    let mut f = File::create(&tmp).map_err(|e| {
        format!(
            "Failed opening the temp RDB file {tmp_name} (in server root dir {shown_dir}) for saving: {}",
            os_error(&e)
        )
    })?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("Write error saving DB on disk: {}", os_error(&e)));
    }
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, dir.join(name)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "Error moving temp DB file {tmp_name} on the final destination {name} (in server root dir {shown_dir}): {}",
            os_error(&e)
        ));
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        format!(
            "Failed to fsync directory while saving DB: {}",
            os_error(&e)
        )
    })
}

/// Runs blocking `work` on a fresh thread and awaits it without blocking
/// the executor: glommio's blocking pool only waits on the join.
async fn off_executor<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let handle = std::thread::Builder::new()
        .name(format!("tether-{what}"))
        .spawn(work)
        .map_err(|e| format!("cannot start the {what} thread: {e}"))?;
    glommio::executor()
        .spawn_blocking(move || handle.join())
        .await
        .unwrap_or_else(|_| Err(format!("the {what} thread panicked")))
}

/// Writes a snapshot to `dir/dbfilename` on a writer thread; on success
/// records the save (LASTSAVE, changes counter) as of `dirty_before`.
async fn write_and_record(
    shared: &Arc<Shared>,
    bytes: Vec<u8>,
    dirty_before: u64,
) -> Result<(), String> {
    let (dir, name) = target(shared);
    off_executor("rdb-writer", move || write_rdb_file(&dir, &name, &bytes)).await?;
    let p = &shared.persist;
    p.saved_dirty.fetch_max(dirty_before, Ordering::SeqCst);
    shared.lastsave.store(unix_secs(), Ordering::SeqCst);
    p.last_bgsave_ok.store(true, Ordering::SeqCst);
    Ok(())
}

/// One save: snapshot, write, record. The caller has claimed `saving`.
/// The changes counter is read before the snapshot, so a write racing
/// with it is counted as unsaved (at worst one save too many).
async fn save_once(shard: &Rc<Shard>) -> Result<(), String> {
    let before = shard.shared.persist.dirty_total();
    let bytes = snapshot_bytes(shard).await;
    write_and_record(&shard.shared, bytes, before).await
}

/// Starts a BGSAVE task on this shard; false if a save already runs.
pub fn start_bgsave(shard: &Rc<Shard>) -> bool {
    let p = &shard.shared.persist;
    if p.claim(BACKGROUND).is_err() {
        return false;
    }
    p.bgsave_scheduled.store(false, Ordering::SeqCst);
    p.saves.fetch_add(1, Ordering::Relaxed);
    p.last_try_secs.store(unix_secs(), Ordering::SeqCst);
    let started = now_ms();
    p.bgsave_started_ms.store(started, Ordering::SeqCst);
    log::info!("Background saving started (shard {})", shard.id);
    let me = shard.clone();
    glommio::spawn_local(async move {
        let p = &me.shared.persist;
        let _guard = SavingGuard(p);
        let t0 = Instant::now();
        let r = save_once(&me).await;
        p.last_bgsave_secs
            .store(t0.elapsed().as_secs() as i64, Ordering::SeqCst);
        match r {
            Ok(()) => log::info!(
                "Background saving terminated with success in {:.3} seconds",
                t0.elapsed().as_secs_f64()
            ),
            Err(e) => {
                p.last_bgsave_ok.store(false, Ordering::SeqCst);
                log::warn!("{e}");
                log::warn!("Background saving error");
            }
        }
    })
    .detach();
    true
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// SAVE: a synchronous save; `+OK` once the file is durable, `-ERR` if it
/// could not be written (the reason goes to the log, as in Redis). Other
/// clients keep being served while the file is written.
pub async fn save_cmd(shard: &Rc<Shard>, in_exec: bool, r: &mut Reply<'_>) {
    if in_exec {
        return r.error("ERR Command not allowed inside a transaction");
    }
    let p = &shard.shared.persist;
    // A second SAVE waits for the first, as Redis would run them in turn.
    let guard = loop {
        match p.claim(FOREGROUND) {
            Ok(()) => break SavingGuard(p),
            Err(BACKGROUND) => return r.error("ERR Background save already in progress"),
            Err(_) => glommio::timer::sleep(Duration::from_millis(5)).await,
        }
    };
    p.saves.fetch_add(1, Ordering::Relaxed);
    let t0 = Instant::now();
    let res = save_once(shard).await;
    drop(guard);
    match res {
        Ok(()) => {
            log::info!(
                "DB saved on disk in {:.3} seconds",
                t0.elapsed().as_secs_f64()
            );
            r.ok()
        }
        Err(e) => {
            log::warn!("{e}");
            r.error("ERR")
        }
    }
}

/// BGSAVE [SCHEDULE]
pub fn bgsave_cmd(shard: &Rc<Shard>, a: &[Bytes], in_exec: bool, r: &mut Reply<'_>) {
    if a.len() > 2 || (a.len() == 2 && !eq_ic(&a[1], "schedule")) {
        return r.error(SYNTAX);
    }
    let p = &shard.shared.persist;
    if p.saving.load(Ordering::SeqCst) != IDLE {
        return r.error("ERR Background save already in progress");
    }
    if in_exec {
        // Inside EXEC every shard is held: the cron starts it afterwards.
        p.bgsave_scheduled.store(true, Ordering::SeqCst);
        return r.simple("Background saving scheduled");
    }
    if start_bgsave(shard) {
        r.simple("Background saving started")
    } else {
        r.error("ERR Background save already in progress")
    }
}

/// FLUSHALL with save points configured writes the now empty dataset at
/// once, as Redis 7.0 does, so a restart cannot bring the flushed keys
/// back. The file written is the empty snapshot itself, so no lock is taken
/// (this also runs inside EXEC, under the caller's locks). Errors are only
/// logged; FLUSHALL still answers OK. Like Redis 7.0's `rdbSave` there, a
/// save resets the changes counter (INFO `rdb_changes_since_last_save`):
/// `covered`, the count read under the flush's locks, is saved; writes
/// since the flush stay counted, as the file does not hold them.
pub async fn save_after_flushall(shard: &Rc<Shard>, covered: u64) {
    let shared = &shard.shared;
    if shared.config().save_params().is_empty() {
        return;
    }
    let p = &shared.persist;
    if p.claim(FOREGROUND).is_err() {
        log::warn!("FLUSHALL: a save is in progress; the emptied dataset is saved by the next one");
        return;
    }
    let _guard = SavingGuard(p);
    let bytes = assemble(shared, Vec::new());
    let (dir, name) = target(shared);
    match off_executor("rdb-writer", move || write_rdb_file(&dir, &name, &bytes)).await {
        Ok(()) => {
            shared.lastsave.store(unix_secs(), Ordering::SeqCst);
            p.saved_dirty.fetch_max(covered, Ordering::SeqCst);
            log::info!("DB saved on disk (empty, after FLUSHALL)");
        }
        Err(e) => log::warn!("FLUSHALL: {e}"),
    }
}

/// What SHUTDOWN (or a signal) asked about saving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownSave {
    /// Save when `save` points are configured.
    Default,
    Save,
    NoSave,
}

/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]. On success there is no
/// reply: the connection closes and the process exits.
pub async fn shutdown_cmd(
    shard: &Rc<Shard>,
    client: &mut ClientState,
    a: &[Bytes],
    in_exec: bool,
    r: &mut Reply<'_>,
) {
    let (mut save, mut nosave, mut force, mut abort, mut flags, mut now) =
        (false, false, false, false, false, false);
    for o in &a[1..] {
        if eq_ic(o, "nosave") {
            nosave = true;
        } else if eq_ic(o, "save") {
            save = true;
        } else if eq_ic(o, "now") {
            now = true;
        } else if eq_ic(o, "force") {
            force = true;
        } else if eq_ic(o, "abort") {
            abort = true;
            continue;
        } else {
            return r.error(SYNTAX);
        }
        flags = true;
    }
    if (abort && flags) || (save && nosave) {
        return r.error(SYNTAX);
    }
    if abort {
        let p = &shard.shared.persist;
        return match p.shutdown_wait.compare_exchange(
            WAIT_ON,
            WAIT_ABORT,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => r.ok(),
            Err(_) => r.error("ERR No shutdown in progress."),
        };
    }
    if in_exec {
        return r.error("ERR Command not allowed inside a transaction");
    }
    let mode = if save {
        ShutdownSave::Save
    } else if nosave {
        ShutdownSave::NoSave
    } else {
        ShutdownSave::Default
    };
    log::warn!("User requested shutdown... (client id={})", client.id);
    let _blocked = crate::shard::blocking::BlockedCount::new(&shard.stats.blocked_clients);
    if prepare_shutdown(shard, mode, force, now).await.is_err() {
        return r.error("ERR Errors trying to SHUTDOWN. Check logs.");
    }
    client.close_after_reply = true;
    // Redis closes the connection without a reply on success.
}

/// Waits for the replicas unless `now` (see [`wait_for_replicas`]), saves
/// if `mode` says so and stops the server. When SHUTDOWN ABORT ends the
/// wait, or on a save error without `force`, the server keeps running and
/// `Err` comes back.
///
/// The final save keeps every shard locked to the end: a write that
/// arrives after the snapshot waits and is never acknowledged, so nothing
/// acknowledged is lost (Redis, single-threaded, gets this for free).
pub async fn prepare_shutdown(
    shard: &Rc<Shard>,
    mode: ShutdownSave,
    force: bool,
    now: bool,
) -> Result<(), ()> {
    let shared = &shard.shared;
    if !now && !wait_for_replicas(shard).await {
        return Err(());
    }
    let wants_save = match mode {
        ShutdownSave::Save => true,
        ShutdownSave::NoSave => false,
        ShutdownSave::Default => !shared.config().save_params().is_empty(),
    };
    if wants_save {
        let p = &shared.persist;
        if p.saving.load(Ordering::SeqCst) == BACKGROUND {
            log::warn!(
                "There is a background save in progress; waiting for it before the final save."
            );
        }
        let guard = p.claim_foreground_wait().await;
        log::info!("Saving the final RDB snapshot before exiting.");
        let all: Vec<usize> = (0..shard.nshards()).collect();
        // The file records where in the stream its data is, so a restart
        // resumes the history by PSYNC (replica or master).
        let tx = crate::repl::snapshot::lock_at_cut(shard, &all).await;
        let position = shared.repl.save_info();
        let before = p.dirty_total();
        let bytes = assemble_with(shared, collect_parts(shard, &tx).await, position.as_ref());
        match write_and_record(shared, bytes, before).await {
            Ok(()) => {
                log::info!("DB saved on disk");
                // Keep every shard locked until the process exits.
                std::mem::forget(tx);
            }
            Err(e) => {
                log::warn!("{e}");
                if force {
                    log::warn!("Error trying to save the DB. Exit anyway.");
                    std::mem::forget(tx);
                } else {
                    log::warn!("Error trying to save the DB, can't exit.");
                    tx.unlock(shard).await;
                    drop(guard);
                    shared.pause.end_shutdown();
                    p.shutdown_wait.store(WAIT_IDLE, Ordering::SeqCst);
                    return Err(());
                }
            }
        }
        std::mem::forget(guard);
    } else {
        log::warn!("Not saving: exiting without a final RDB snapshot.");
    }
    shared.request_shutdown();
    Ok(())
}

/// Redis 7.0's graceful shutdown: while some replica has not acknowledged
/// the whole stream, and `shutdown-timeout` is not 0, writes are paused
/// (`cmd::pause`), the replicas are asked for their offsets (REPLCONF
/// GETACK) and the shutdown waits until every one has acknowledged it all,
/// or the timeout passes: writes acknowledged to clients reach the
/// replicas before the master goes, so a failover does not lose them. The
/// pause lasts until the process exits. SHUTDOWN ABORT ends the wait and
/// the shutdown, and lifts the pause: then false comes back, as it does to
/// a second shutdown that found this one waiting and saw it aborted.
async fn wait_for_replicas(shard: &Rc<Shard>) -> bool {
    let shared = &shard.shared;
    let (repl, p) = (&shared.repl, &shared.persist);
    let in_sync = || {
        let off = repl.seq.offset();
        let all = crate::repl::lock(&repl.replicas);
        (all.values().filter(|v| v.ack_off >= off).count(), all.len())
    };
    let secs = shared
        .config()
        .get_int("shutdown-timeout")
        .unwrap_or(10)
        .max(0) as u64;
    let (synced, all) = in_sync();
    if secs == 0 || synced == all {
        return true;
    }
    if p.shutdown_wait
        .compare_exchange(WAIT_IDLE, WAIT_ON, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        // Another shutdown is under way: it ends in exit, or in an abort.
        while p.shutdown_wait.load(Ordering::SeqCst) != WAIT_IDLE
            && !shared.shutdown.load(Ordering::SeqCst)
        {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        return shared.shutdown.load(Ordering::SeqCst);
    }
    if shared.pause.mode(crate::shard::now_ms()).is_none() {
        crate::repl::master::emit_getack(shard);
    }
    shared.pause.begin_shutdown();
    log::warn!("Waiting for replicas before shutting down.");
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    p.shutdown_deadline_ms
        .store(crate::shard::now_ms() + secs * 1000, Ordering::SeqCst);
    loop {
        glommio::timer::sleep(Duration::from_millis(10)).await;
        if p.shutdown_wait.load(Ordering::SeqCst) == WAIT_ABORT {
            shared.pause.end_shutdown();
            p.shutdown_deadline_ms.store(0, Ordering::SeqCst);
            p.shutdown_wait.store(WAIT_IDLE, Ordering::SeqCst);
            log::warn!("Shutdown manually aborted.");
            return false;
        }
        let (synced, all) = in_sync();
        if (synced == all || std::time::Instant::now() >= deadline)
            && p.shutdown_wait
                .compare_exchange(WAIT_ON, WAIT_DONE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            // Redis's words for each replica the wait gave up on.
            let off = repl.seq.offset();
            let now = crate::shard::now_ms();
            for v in crate::repl::lock(&repl.replicas).values() {
                if v.ack_off < off {
                    log::warn!(
                        "Lagging replica {}:{} reported offset {} behind master, lag={}, state={}.",
                        v.ip,
                        v.port,
                        off - v.ack_off,
                        now.saturating_sub(v.ack_ms) / 1000,
                        v.state
                    );
                }
            }
            log::warn!("{synced} of {all} replicas are in sync when shutting down.");
            // Under way until exit, or until the save fails.
            return true;
        }
    }
}

/// DEBUG RELOAD [NOSAVE]: save, then empty every database and load the
/// file back, with every shard locked throughout (no client sees the gap).
pub async fn debug_reload(shard: &Rc<Shard>, a: &[Bytes], in_exec: bool, r: &mut Reply<'_>) {
    let mut save = true;
    for o in &a[2..] {
        if eq_ic(o, "nosave") {
            save = false;
        } else if eq_ic(o, "merge") || eq_ic(o, "noflush") {
            return r.error(&format!(
                "ERR DEBUG RELOAD {} is not supported by tether",
                String::from_utf8_lossy(o).to_uppercase()
            ));
        } else {
            return r
                .error("ERR DEBUG RELOAD only supports the MERGE, NOFLUSH and NOSAVE options.");
        }
    }
    if in_exec {
        return r.error("ERR DEBUG RELOAD is not allowed inside a transaction");
    }
    let shared = &shard.shared;
    let p = &shared.persist;
    let _guard = p.claim_foreground_wait().await;
    let all: Vec<usize> = (0..shard.nshards()).collect();
    let tx = Tx::lock(shard, &all).await;
    let (dir, name) = target(shared);
    if save {
        let before = p.dirty_total();
        let bytes = assemble(shared, collect_parts(shard, &tx).await);
        if let Err(e) = write_and_record(shared, bytes, before).await {
            log::warn!("{e}");
            tx.unlock(shard).await;
            return r.error("ERR Error trying to save the DB");
        }
        log::info!("DB saved on disk");
    }
    let path = dir.join(&name);
    let (nshards, databases) = (shard.nshards(), shard.databases);
    let replica = shard.shared.repl.is_replica.load(Ordering::Relaxed);
    let loaded = off_executor("rdb-loader", move || {
        let f = File::open(&path).map_err(|e| format!("{}: {}", path.display(), os_error(&e)))?;
        load_stream(f, nshards, databases, load_cut(replica))
    })
    .await;
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            log::warn!("DEBUG RELOAD: error loading the RDB: {e}");
            tx.unlock(shard).await;
            return r.error("ERR Error trying to load the RDB dump, check server logs.");
        }
    };
    p.loaded_keys.store(loaded.keys, Ordering::Relaxed);
    p.loaded_expired.store(loaded.expired, Ordering::Relaxed);
    for (s, ks) in loaded.keyspaces.into_iter().enumerate() {
        tx.op(shard, s, Op::Adopt(Adopt(Box::new(ks)))).await;
    }
    // Loading resets the changes counter, as in Redis.
    p.saved_dirty.fetch_max(p.dirty_total(), Ordering::SeqCst);
    tx.unlock(shard).await;
    log::info!("DB reloaded by DEBUG RELOAD");
    r.ok()
}

/// A whole keyspace handed to a shard (DEBUG RELOAD).
pub struct Adopt(pub Box<Keyspace>);

impl std::fmt::Debug for Adopt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: usize = self.0.dbs.iter().map(|d| d.len()).sum();
        write!(f, "Adopt({keys} keys)")
    }
}

/// Replaces this shard's keyspace (the `Op::Adopt` handler): every WATCH on
/// it fails, as after FLUSHALL.
pub fn adopt(shard: &Shard, ks: Adopt) {
    *shard.ks.borrow_mut() = *ks.0;
    shard.db_modified(None);
}

/// INFO's `# Persistence` section, with Redis 7.0's fields.
pub fn info_section(shared: &Shared) -> String {
    let p = &shared.persist;
    let bg = p.bgsave_in_progress();
    let current = if bg {
        (now_ms().saturating_sub(p.bgsave_started_ms.load(Ordering::Relaxed)) / 1000) as i64
    } else {
        -1
    };
    let mut s = String::from("# Persistence\r\n");
    let _ = write!(
        s,
        "loading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\ncurrent_cow_size:0\r\ncurrent_cow_size_age:0\r\ncurrent_fork_perc:0.00\r\ncurrent_save_keys_processed:0\r\ncurrent_save_keys_total:0\r\nrdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:{}\r\nrdb_last_save_time:{}\r\nrdb_last_bgsave_status:{}\r\nrdb_last_bgsave_time_sec:{}\r\nrdb_current_bgsave_time_sec:{current}\r\nrdb_saves:{}\r\nrdb_last_cow_size:0\r\nrdb_last_load_keys_expired:{}\r\nrdb_last_load_keys_loaded:{}\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_rewrite_time_sec:-1\r\naof_current_rewrite_time_sec:-1\r\naof_last_bgrewrite_status:ok\r\naof_rewrites:0\r\naof_rewrites_consecutive_failures:0\r\naof_last_write_status:ok\r\naof_last_cow_size:0\r\nmodule_fork_in_progress:0\r\nmodule_fork_last_cow_size:0\r\n\r\n",
        p.changes_since_save(),
        // As Redis, whose full syncs are RDB children too: a snapshot for
        // a replica counts (`repl::snapshot`, one at a time).
        (bg || shared.repl.snapshot_busy.load(Ordering::Relaxed)) as u8,
        shared.lastsave.load(Ordering::Relaxed),
        if p.last_bgsave_ok.load(Ordering::Relaxed) {
            "ok"
        } else {
            "err"
        },
        p.last_bgsave_secs.load(Ordering::Relaxed),
        p.saves.load(Ordering::Relaxed),
        p.loaded_expired.load(Ordering::Relaxed),
        p.loaded_keys.load(Ordering::Relaxed),
    );
    s
}

// ---------------------------------------------------------------------------
// Schedule, signals, start and exit
// ---------------------------------------------------------------------------

/// Called by every shard once it is built, before it listens: adopts the
/// keyspace loaded at start-up, and on shard 0 starts the [`cron`].
pub fn on_shard_start(shard: &Rc<Shard>) {
    let ks = shard
        .shared
        .persist
        .preload
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(shard.id)
        .and_then(Option::take);
    if let Some(ks) = ks {
        *shard.ks.borrow_mut() = ks;
    }
    if shard.id == 0 {
        glommio::spawn_local(cron(shard.clone())).detach();
    }
}

/// Shard 0's persistence heartbeat: a shutdown asked for by a signal, a
/// BGSAVE scheduled inside EXEC, and the `save <secs> <changes>` points,
/// checked as Redis's serverCron does (strictly more than `secs` since the
/// last save, and after a failure only once `RETRY_DELAY_SECS` passed).
pub async fn cron(shard: Rc<Shard>) {
    let shared = shard.shared.clone();
    let p = &shared.persist;
    loop {
        glommio::timer::sleep(CRON_PERIOD).await;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let sig = p.signal.swap(0, Ordering::SeqCst);
        if sig != 0 {
            let name = signal_name(sig);
            // shutdown-on-sigterm / shutdown-on-sigint: SHUTDOWN's flags.
            use crate::config::{SHUTDOWN_FORCE, SHUTDOWN_NOSAVE, SHUTDOWN_NOW, SHUTDOWN_SAVE};
            let f = shared.config().shutdown_on_signal(sig == libc::SIGINT);
            let mode = if f & SHUTDOWN_SAVE != 0 {
                ShutdownSave::Save
            } else if f & SHUTDOWN_NOSAVE != 0 {
                ShutdownSave::NoSave
            } else {
                ShutdownSave::Default
            };
            let (force, now) = (f & SHUTDOWN_FORCE != 0, f & SHUTDOWN_NOW != 0);
            if prepare_shutdown(&shard, mode, force, now).await.is_err() {
                log::warn!(
                    "{name} received but errors trying to shut down the server, check the logs for more information"
                );
            }
            continue;
        }
        if p.saving.load(Ordering::SeqCst) != IDLE {
            continue;
        }
        if p.bgsave_scheduled.load(Ordering::SeqCst) {
            start_bgsave(&shard);
            continue;
        }
        let params = shared.config().save_params();
        if params.is_empty() {
            continue;
        }
        let (now, changes) = (unix_secs(), p.changes_since_save());
        let since_save = now.saturating_sub(shared.lastsave.load(Ordering::SeqCst));
        let may_retry = p.last_bgsave_ok.load(Ordering::SeqCst)
            || now.saturating_sub(p.last_try_secs.load(Ordering::SeqCst)) > RETRY_DELAY_SECS;
        if let Some((secs, n)) = params
            .iter()
            .find(|&&(secs, n)| changes >= n && since_save > secs)
            && may_retry
        {
            log::info!("{n} changes in {secs} seconds. Saving...");
            start_bgsave(&shard);
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}

/// Routes SIGTERM and SIGINT to a thread of their own: the cron then shuts
/// down like SHUTDOWN would (saving when save points are configured). A
/// second SIGINT exits at once. Call before starting any other thread, so
/// every thread inherits the blocked mask.
pub fn install_signal_thread(shared: Arc<Shared>) {
    // SAFETY: plain libc signal-mask calls on a zeroed, initialised set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let spawned = std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || {
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `set` is a valid signal set, `sig` a valid out-pointer.
                if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                    continue;
                }
                let name = signal_name(sig);
                let ready = shared.ready.load(Ordering::SeqCst) >= shared.nshards;
                if !ready {
                    log::warn!("Received {name} while starting up (or loading): exiting now without saving.");
                    std::process::exit(0);
                }
                let pending = shared.persist.signal.swap(sig, Ordering::SeqCst) != 0;
                if pending && sig == libc::SIGINT {
                    log::warn!("You insist... exiting now.");
                    remove_temp_file(&shared);
                    std::process::exit(1);
                }
                log::warn!("Received {name} scheduling shutdown...");
            }
        });
    if let Err(e) = spawned {
        log::warn!(
            "cannot start the signal thread ({e}); SIGTERM will stop tether without a final save"
        );
        // SAFETY: undo the mask so the default actions apply again.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    }
}

/// Removes a leftover `temp-<pid>.rdb` (an interrupted background save),
/// as Redis does on exit.
pub fn remove_temp_file(shared: &Shared) {
    let (dir, _) = target(shared);
    let _ = std::fs::remove_file(dir.join(temp_name()));
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Keyspaces built from an RDB stream, one per shard, and what was found.
pub struct Loaded {
    pub keyspaces: Vec<Keyspace>,
    pub keys: u64,
    pub expired: u64,
    pub aux: Vec<(Bytes, Bytes)>,
    /// The keys left out as expired, by (shard, db), kept when a master
    /// loads a file it resumes a stream from ([`master_resumes`]): their
    /// DELs go into that stream, so its replicas drop them too (Redis
    /// feeds them to the backlog while loading, `RDBFLAGS_FEED_REPL`).
    pub expired_keys: Option<Vec<(usize, u16, Bytes)>>,
}

/// The instant before which a loaded key counts as expired and is left
/// out: now on a master; never on a replica, whose keys expire by its
/// master's DEL (Redis 7.0's rdbLoad drops expired keys only when it is
/// a master).
fn load_cut(replica: bool) -> u64 {
    if replica { 0 } else { now_ms() }
}

/// Loads `dir/dbfilename` if it exists, before the shards start. `Err` is
/// the complete log line for a fatal error (the caller exits with 1): a
/// corrupt, truncated or unsupported file stops the start-up rather than
/// starting empty.
pub fn load_at_startup(shared: &Shared) -> Result<(), String> {
    let (dir, name) = target(shared);
    let path = dir.join(&name);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(format!(
                "Fatal error loading the DB from {}: {}. Exiting.",
                path.display(),
                os_error(&e)
            ));
        }
    };
    let t0 = Instant::now();
    let databases = shared.config().databases();
    let replica = shared.config().replicaof().is_some();
    let loaded = load_stream(file, shared.nshards, databases, load_cut(replica)).map_err(|e| {
        format!(
            "Fatal error loading the DB from {}: {e}. Exiting. (Check the file with redis-check-rdb; move it away to start with an empty dataset.)",
            path.display()
        )
    })?;
    log_aux(&loaded.aux, shared);
    log::info!(
        "Done loading RDB, keys loaded: {}, keys expired: {}.",
        loaded.keys,
        loaded.expired
    );
    let p = &shared.persist;
    p.loaded_keys.store(loaded.keys, Ordering::Relaxed);
    p.loaded_expired.store(loaded.expired, Ordering::Relaxed);
    let resume = !replica && master_resumes(&loaded.aux);
    let mut keyspaces = loaded.keyspaces;
    if resume {
        // Expiries from here on are propagated, the load's first.
        for ks in keyspaces.iter_mut() {
            for db in ks.dbs.iter_mut() {
                db.expired_log = Some(Vec::new());
            }
        }
        for (s, db, key) in loaded.expired_keys.unwrap_or_default() {
            if let Some(log) = keyspaces[s].dbs[db as usize].expired_log.as_mut() {
                log.push(key);
                keyspaces[s].stats.dels_pending = true;
            }
        }
    }
    let mut pre = p.preload.lock().unwrap_or_else(|e| e.into_inner());
    for (slot, ks) in pre.iter_mut().zip(keyspaces) {
        *slot = Some(ks);
    }
    drop(pre);
    log::info!(
        "DB loaded from disk: {:.3} seconds",
        t0.elapsed().as_secs_f64()
    );
    // A replica resumes from where its file says it was: its link offers
    // PSYNC <id> <offset+1> (Redis's replicationCacheMasterUsingMyself).
    if replica && let Some((id, off, db)) = p.loaded_repl().filter(|r| r.0.len() == 40 && r.1 >= 0)
    {
        shared.repl.adopt_history(id, off as u64);
        shared.repl.stream_db.store(db, Ordering::SeqCst);
    }
    // A master takes the file's id as its secondary one, valid up to the
    // file's offset, and goes on from that offset with a backlog: its
    // replicas, and one that was its replica before a failover, continue
    // by PSYNC instead of a full sync (Redis 7.0's `loadDataFromDisk`).
    if resume && let Some((id, off, _)) = p.loaded_repl() {
        let repl = &shared.repl;
        repl.reset_backlog(off as u64);
        {
            let mut ids = crate::repl::lock(&repl.ids);
            log::info!(
                "Setting secondary replication ID to {id}, valid up to offset: {}. New replication ID is {}",
                off + 1,
                ids.replid
            );
            ids.replid2 = id;
            ids.second_offset = off + 1;
        }
        repl.active.store(true, Ordering::SeqCst);
    }
    Ok(())
}

/// Logs what the header says (as Redis does while loading) and keeps the
/// replication id and offset for replication to resume from.
fn log_aux(aux: &[(Bytes, Bytes)], shared: &Shared) {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    for (k, v) in aux {
        match k.as_ref() {
            b"redis-ver" => log::info!("Loading RDB produced by version {}", text(v)),
            b"ctime" => {
                if let Ok(t) = text(v).parse::<i64>() {
                    let age = unix_secs() as i64 - t;
                    log::info!("RDB age {} seconds", age.max(0));
                }
            }
            b"used-mem" => {
                if let Ok(m) = text(v).parse::<f64>() {
                    log::info!(
                        "RDB memory usage when created {:.2} Mb",
                        m / 1024.0 / 1024.0
                    );
                }
            }
            b"repl-id" | b"repl-offset" | b"repl-stream-db" => {}
            _ => log::debug!("RDB AUX field '{}' = '{}'", text(k), text(v)),
        }
    }
    if let Some((id, off, stream_db)) = aux_repl(aux) {
        log::info!(
            "RDB holds replication id {id} at offset {off} (kept for a later partial resync)"
        );
        *shared
            .persist
            .loaded_repl
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((id, off, stream_db));
    }
}

/// The header's replication fields: `repl-id`, `repl-offset` and
/// `repl-stream-db` (-1 when absent), if the first two are there.
fn aux_repl(aux: &[(Bytes, Bytes)]) -> Option<(String, i64, i64)> {
    let field = |name: &[u8]| {
        aux.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let id = field(b"repl-id")?;
    let off = field(b"repl-offset")?.parse::<i64>().ok()?;
    let db = field(b"repl-stream-db")
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(-1);
    Some((id, off, db))
}

/// Whether a master restarting from a file with these fields continues
/// its stream history (Redis's `rsi_is_valid` in `loadDataFromDisk`).
fn master_resumes(aux: &[(Bytes, Bytes)]) -> bool {
    aux_repl(aux).is_some_and(|(id, off, db)| id.len() == 40 && off >= 0 && db != -1)
}

/// Parses an RDB stream, routing every live key to the builder thread of
/// its owning shard. Keys whose TTL is already past `now` are dropped, as a
/// master does. Blocking (reads `input`); the error text names the problem
/// and the byte offset.
pub fn load_stream(
    mut input: impl Read,
    nshards: usize,
    databases: usize,
    now: u64,
) -> Result<Loaded, String> {
    type Batch = Vec<(u16, Bytes, Entry)>;
    let mut senders: Vec<SyncSender<Batch>> = Vec::with_capacity(nshards);
    let mut builders = Vec::with_capacity(nshards);
    for s in 0..nshards {
        let (tx, rx) = sync_channel::<Batch>(16);
        senders.push(tx);
        let b = std::thread::Builder::new()
            .name(format!("tether-load-{s}"))
            .spawn(move || build_keyspace(rx, databases))
            .map_err(|e| format!("cannot start a loader thread: {e}"))?;
        builders.push(b);
    }
    let mut batches: Vec<Batch> = (0..nshards)
        .map(|_| Vec::with_capacity(LOAD_BATCH))
        .collect();
    let mut loaded = Loaded {
        keyspaces: Vec::new(),
        keys: 0,
        expired: 0,
        aux: Vec::new(),
        expired_keys: None,
    };
    let parsed = parse_into(
        &mut input,
        databases,
        nshards,
        now,
        &mut loaded,
        |s, item| {
            let b = &mut batches[s];
            b.push(item);
            if b.len() >= LOAD_BATCH {
                // A send fails only when the builder stopped on an error,
                // which its join reports below.
                let _ = senders[s].send(std::mem::replace(b, Vec::with_capacity(LOAD_BATCH)));
            }
        },
    );
    for (s, b) in batches.into_iter().enumerate() {
        if !b.is_empty() {
            let _ = senders[s].send(b);
        }
    }
    drop(senders);
    let mut first_err = parsed.err();
    for b in builders {
        match b.join() {
            Ok(Ok(ks)) => loaded.keyspaces.push(ks),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert("a loader thread panicked".into());
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(loaded),
    }
}

/// The parser half of [`load_stream`]: reads `input` in chunks, feeds the
/// resumable [`Loader`], and passes each live key to `route`.
fn parse_into(
    input: &mut impl Read,
    databases: usize,
    nshards: usize,
    now: u64,
    loaded: &mut Loaded,
    mut route: impl FnMut(usize, (u16, Bytes, Entry)),
) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    let mut loader = Loader::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut start = 0usize;
    let mut eof = false;
    let mut db: u16 = 0;
    loop {
        match loader.next(&buf[start..]) {
            Ok(Some((ev, n))) => {
                start += n;
                match ev {
                    Event::Aux(k, v) => loaded.aux.push((k, v)),
                    Event::Function(_) => log::warn!(
                        "The RDB holds a function library; tether has no FUNCTION support and skips it."
                    ),
                    Event::SelectDb(d) => {
                        if d >= databases as u64 {
                            return Err(format!(
                                "the file selects DB {d}, but only {databases} databases are configured (raise `databases`)"
                            ));
                        }
                        db = d as u16;
                    }
                    Event::ResizeDb { .. } => {}
                    Event::Entry {
                        key,
                        value,
                        expire_at,
                    } => {
                        if expire_at != 0 && expire_at <= now {
                            loaded.expired += 1;
                            // The header came first: decide once.
                            if loaded.expired == 1 && master_resumes(&loaded.aux) {
                                loaded.expired_keys = Some(Vec::new());
                            }
                            if let Some(v) = loaded.expired_keys.as_mut() {
                                v.push((shard_of(&key, nshards), db, key));
                            }
                            continue;
                        }
                        loaded.keys += 1;
                        let s = shard_of(&key, nshards);
                        route(s, (db, key, Entry { value, expire_at }));
                    }
                    Event::End { checksum_ok } => {
                        if !checksum_ok {
                            return Err(format!(
                                "wrong RDB checksum at offset {} (the file is corrupt)",
                                loader.offset()
                            ));
                        }
                        return Ok(());
                    }
                }
            }
            Ok(None) => {
                if eof {
                    return Err(format!(
                        "unexpected end of file after {} bytes (the file is truncated)",
                        loader.offset() + (buf.len() - start) as u64
                    ));
                }
                if start > 0 {
                    buf.drain(..start);
                    start = 0;
                }
                let old = buf.len();
                buf.resize(old + CHUNK, 0);
                let got = loop {
                    match input.read(&mut buf[old..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(format!("read error: {}", os_error(&e))),
                    }
                };
                buf.truncate(old + got);
                eof = got == 0;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// A builder thread: inserts its shard's keys; a key seen twice in one
/// database is corruption, as in Redis ("Duplicated key found in RDB file").
fn build_keyspace(
    rx: Receiver<Vec<(u16, Bytes, Entry)>>,
    databases: usize,
) -> Result<Keyspace, String> {
    let mut ks = Keyspace::new(databases);
    for batch in rx {
        for (db, key, entry) in batch {
            let d = &mut ks.dbs[db as usize];
            let before = d.len();
            d.insert(&key, entry);
            if d.len() == before {
                return Err(format!(
                    "RDB has duplicated key '{}' in DB {db}",
                    String::from_utf8_lossy(&key[..key.len().min(128)])
                ));
            }
        }
    }
    Ok(ks)
}
