//! Start-up: read the config (file + `--name value` overrides), check that
//! io_uring works, bind-check the port, load the RDB file, start one glommio
//! executor pinned per CPU of the affinity mask (or `cpus`), join them, exit.

use std::sync::Arc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tether::config::Config;
use tether::net::{ring::Ring, sockopt};
use tether::shard::{self, Shared};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--version" || a == "-v") {
        println!(
            "tether v{} (Redis 7.0.15 compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return;
    }
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    init_logging(&config);
    if !config.requirepass().is_empty() {
        fail(
            "requirepass is set, but tether does not implement AUTH yet; refusing to start rather than run unprotected",
        );
    }
    let cpus = match config.cpus() {
        Some(c) if !c.is_empty() => c,
        _ => core_affinity::get_core_ids()
            .map(|v| v.into_iter().map(|c| c.id).collect())
            .unwrap_or_else(|| vec![0]),
    };
    let nshards = if config.shards() == 0 {
        cpus.len()
    } else {
        config.shards()
    };
    // Preflight: the socket ring must be buildable here, or nothing works.
    if let Err(e) = Ring::new(8, 2, 64) {
        fail(&format!(
            "io_uring setup failed: {e}. {}",
            sockopt::IO_URING_REMEDY
        ));
    }
    // Port 0 listens on no TCP port, as in Redis (a unix socket only).
    let mut addrs = Vec::new();
    for b in config.bind().into_iter().filter(|_| config.port() != 0) {
        match sockopt::resolve(&b, config.port()) {
            Ok(a) => addrs.extend(a),
            Err(e) => fail(&format!("cannot resolve bind address '{b}': {e}")),
        }
    }
    for a in &addrs {
        if let Err(e) = sockopt::check_free(*a) {
            fail(&format!(
                "could not create server TCP listening socket {a}: {e}"
            ));
        }
    }
    let unix = config.unix_socket();
    if addrs.is_empty() && unix.is_none() {
        fail("Configured to not listen anywhere, exiting.");
    }
    let unix_fd = unix.as_ref().map(|(path, perm)| {
        sockopt::unix_listener(path, *perm, config.tcp_backlog())
            .unwrap_or_else(|e| fail(&format!("Failed opening Unix socket {path}: {e}")))
    });
    let port = config.port();
    let mut shared = Shared::new(config, nshards);
    shared.cores_shared = nshards > cpus.len();
    let shared = Arc::new(shared);
    log::info!(
        "tether v{} starting: pid={}, port={port}, shards={nshards} on cpus {:?}, run_id={}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        (0..nshards)
            .map(|i| cpus[i % cpus.len()])
            .collect::<Vec<_>>(),
        shared.run_id
    );
    // Redis's logo carries these two fields, which scripts (and Redis's
    // test harness) read off the log.
    if shared.config().get_bool("always-show-logo") == Some(true) {
        log::info!(
            "tether {}, Redis 7.0 compatible, standalone mode. Port: {port} PID: {}",
            env!("CARGO_PKG_VERSION"),
            std::process::id()
        );
    }
    // Before any other thread starts, so they all inherit the signal mask.
    tether::persist::install_signal_thread(shared.clone());
    if let Err(e) = tether::persist::load_at_startup(&shared) {
        fail(&e);
    }
    let mut handles = Vec::new();
    for i in 0..nshards {
        let (shared, addrs) = (shared.clone(), addrs.clone());
        // Shard 0 accepts the unix socket's connections.
        let unix = if i == 0 { unix_fd } else { None };
        let builder = LocalExecutorBuilder::new(Placement::Fixed(cpus[i % cpus.len()]))
            .name(&format!("tether-shard-{i}"))
            .io_memory(256 << 10)
            // glommio 0.9 parks an executor whose preempt timer fired
            // before its first task ran, with no timer left to wake it:
            // with a 1 ms timer a shard descheduled during start-up slept
            // for seconds (CI's 4-shard hang). 100 ms (glommio's default)
            // makes that window far wider than any scheduling hiccup.
            .preempt_timer(Duration::from_millis(100));
        match builder.spawn(move || shard::run(i, shared, addrs, unix)) {
            Ok(h) => handles.push(h),
            Err(e) => fail(&format!(
                "cannot start shard {i} on cpu {}: {e}. {}",
                cpus[i % cpus.len()],
                sockopt::IO_URING_REMEDY
            )),
        }
    }
    // Start-up watchdog: say so if some shard is not listening after 5 s
    // (a stuck bind or start-up load), instead of a silent partial server.
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(5));
            let ready = shared.ready.load(std::sync::atomic::Ordering::SeqCst);
            if ready < shared.nshards && !shared.shutdown.load(std::sync::atomic::Ordering::SeqCst)
            {
                log::error!(
                    "start-up: only {ready} of {} shards are listening after 5 s (bind or start-up stuck); connections hashed to the others will hang. Run with RUST_LOG=debug to see which shard stopped where.",
                    shared.nshards
                );
            }
        });
    }
    for h in handles {
        if h.join().is_err() {
            log::error!("a shard executor panicked");
            std::process::exit(1);
        }
    }
    tether::persist::remove_temp_file(&shared);
    if let Some((path, _)) = &unix {
        log::info!("Removing the unix socket file.");
        let _ = std::fs::remove_file(path);
    }
    log::warn!("tether is now ready to exit, bye bye...");
    std::process::exit(shared.exit_code.load(std::sync::atomic::Ordering::SeqCst) as i32);
}

fn fail(msg: &str) -> ! {
    log::error!("{msg}");
    eprintln!("tether: {msg}");
    std::process::exit(1);
}

/// Maps Redis log levels onto env_logger's; RUST_LOG still overrides.
fn init_logging(config: &Config) {
    let level = match config.loglevel() {
        "debug" => "debug",
        "verbose" => "info",
        "warning" => "warn",
        _ => "info",
    };
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    b.format_timestamp_millis();
    if !config.logfile().is_empty() {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.logfile())
        {
            Ok(f) => {
                b.target(env_logger::Target::Pipe(Box::new(f)));
            }
            Err(e) => {
                eprintln!("tether: can't open the log file {}: {e}", config.logfile());
                std::process::exit(1);
            }
        }
    } else {
        // `logfile ""` is standard output in Redis, where scripts and
        // harnesses look for its lines.
        b.target(env_logger::Target::Stdout);
    }
    b.init();
}
