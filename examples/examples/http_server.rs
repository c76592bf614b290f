//! A keep-alive HTTP/1.1 server on `ioman::EventManager`, with its own load generator.
//!
//! ```text
//! cargo run --release -p ioman-examples --example http_server                 # self-driving demo
//! cargo run --release -p ioman-examples --example http_server -- --quick      # 2 s, C=20, I=200
//! cargo run --release -p ioman-examples --example http_server -- serve --addr 127.0.0.1:8080
//! ```
//!
//! **Self-driving mode** (the default) starts the server on an ephemeral port of 127.0.0.1,
//! opens `--idle I` idle connections (each pinged with one request every third of the idle
//! timeout, so the server keeps them, each with its own timer), `--silent Q` connections that
//! never send (the server's idle timeout closes them during the run), and `--clients C`
//! keep-alive connections that send `GET /` in a closed loop for `--seconds S`; prints a
//! progress line each second, then the request rate, latency percentiles, live connections,
//! registrations and timers, idle timeouts fired and errors. It raises its open-file soft
//! limit to the hard one and, if that still cannot hold every connection, opens fewer idle
//! ones and says so. It exits 1 if there were errors or no requests.
//!
//! **Serve mode** (`serve --addr A`) just serves, for `--seconds S` if given, else forever.
//!
//! Options: `--clients C` (100), `--idle I` (3000), `--silent Q` (1000), `--seconds S` (10),
//! `--threads N` (server managers, 1; N > 1 uses `ioman::Pool`), `--client-threads K` (1),
//! `--idle-timeout-ms T` (3000), `--quick` (C = 20, I = 150, Q = 50, 2 s, T = 600 ms).

use ioman_examples::demo::Demo;
use ioman_examples::server;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    serve: bool,
    addr: SocketAddr,
    clients: usize,
    idle: usize,
    silent: usize,
    seconds: Option<u64>,
    threads: usize,
    client_threads: usize,
    idle_timeout: Duration,
}

const USAGE: &str = "usage: http_server [serve --addr 127.0.0.1:8080] [--clients C] [--idle I] \
[--silent Q] [--seconds S] [--threads N] [--client-threads K] [--idle-timeout-ms T] [--quick]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        serve: false,
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        clients: 100,
        idle: 3000,
        silent: 1000,
        seconds: None,
        threads: 1,
        client_threads: 1,
        idle_timeout: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match arg.as_str() {
            "serve" => a.serve = true,
            "--addr" => {
                let v = value("--addr")?;
                a.addr = v.parse().map_err(|_| format!("--addr: bad address: {v}"))?;
            }
            "--clients" => a.clients = num("--clients", value("--clients")?)?,
            "--idle" => a.idle = num("--idle", value("--idle")?)?,
            "--silent" => a.silent = num("--silent", value("--silent")?)?,
            "--seconds" => a.seconds = Some(num("--seconds", value("--seconds")?)?),
            "--threads" => a.threads = num::<usize>("--threads", value("--threads")?)?.max(1),
            "--client-threads" => {
                a.client_threads = num::<usize>("--client-threads", value("--client-threads")?)?;
            }
            "--idle-timeout-ms" => {
                let ms: u64 = num("--idle-timeout-ms", value("--idle-timeout-ms")?)?;
                a.idle_timeout = Duration::from_millis(ms);
            }
            "--quick" => {
                a.clients = 20;
                a.idle = 150;
                a.silent = 50;
                a.seconds = Some(2);
                a.idle_timeout = Duration::from_millis(600);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument: {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = if args.serve {
        serve(&args)
    } else {
        let demo = Demo {
            clients: args.clients,
            idle: args.idle,
            silent: args.silent,
            duration: Duration::from_secs(args.seconds.unwrap_or(10)),
            threads: args.threads,
            client_threads: args.client_threads,
            idle_timeout: args.idle_timeout,
            progress: true,
        };
        demo.run().map(|o| {
            o.print();
            o.ok()
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("http_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &Args) -> std::io::Result<bool> {
    let s = server::Server::start(server::Config {
        addr: args.addr,
        threads: args.threads,
        idle_timeout: args.idle_timeout,
        clock: None,
    })?;
    println!(
        "serving http://{} with {} manager(s){}",
        s.addr(),
        args.threads,
        match args.seconds {
            Some(n) => format!(" for {n} s"),
            None => String::new(),
        }
    );
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if args
            .seconds
            .is_some_and(|n| start.elapsed() >= Duration::from_secs(n))
        {
            break;
        }
    }
    let st = s.stats();
    println!(
        "served {} requests on {} connections",
        st.requests, st.accepted
    );
    s.shutdown();
    Ok(true)
}
