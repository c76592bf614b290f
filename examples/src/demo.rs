//! The self-driving demo: server, idle connections, closed-loop load and the final report
//! (shared by the `http_server` example and the integration test).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{loadgen, server};

/// The self-driving demo (also run by the integration test in quick mode).
pub struct Demo {
    /// Keep-alive connections in the closed loop.
    pub clients: usize,
    /// Idle connections held open, each pinged with one request every third of the idle
    /// timeout, so the server keeps them (and their timers).
    pub idle: usize,
    /// Silent connections that never send: the server's idle timeout closes them.
    pub silent: usize,
    /// How long the load runs.
    pub duration: Duration,
    /// Server managers.
    pub threads: usize,
    /// Load generator threads.
    pub client_threads: usize,
    /// The server's idle timeout.
    pub idle_timeout: Duration,
    /// Print a line each second.
    pub progress: bool,
}

/// What the demo measured.
pub struct Outcome {
    /// The load generator's report.
    pub report: loadgen::Report,
    /// Server statistics at the end of the load (before shutdown).
    pub server: server::Stats,
    /// Live fd registrations and timers at the end of the load (`EventManager::live`).
    pub live: (usize, usize),
    /// Idle connections the client opened (pinged ones).
    pub idle_opened: usize,
    /// Silent connections the client opened.
    pub silent_opened: usize,
    /// Pings answered and failed on the idle connections.
    pub pings: (u64, u64),
    /// Server threads.
    pub threads: usize,
}

impl Outcome {
    /// Whether the run counts as a success.
    pub fn ok(&self) -> bool {
        self.report.errors == 0 && self.report.requests > 0 && self.pings.1 == 0
    }

    /// Prints the summary.
    pub fn print(&self) {
        let r = &self.report;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "--- ioman http_server, {} manager thread(s) ---",
            self.threads
        );
        println!(
            "requests      {} in {:.2} s",
            r.requests,
            r.elapsed.as_secs_f64()
        );
        println!("requests/s    {:.0}", r.rate());
        println!(
            "latency       p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
            ms(r.latency.quantile(0.50)),
            ms(r.latency.quantile(0.99)),
            ms(r.latency.max())
        );
        let active = self.server.live().saturating_sub(self.idle_opened as u64);
        println!(
            "connections   {} live = {} active + {} idle (pinged {} times); {} accepted",
            self.server.live(),
            active,
            self.idle_opened,
            self.pings.0,
            self.server.accepted,
        );
        println!(
            "idle timeouts {} fired: the {} silent connections, closed one idle timeout after \
they were accepted",
            self.server.idle_timeouts, self.silent_opened
        );
        println!(
            "manager       {} fd registrations = {} connections + the listener (one Rearmable each); \
{} timers = one idle timeout per connection",
            self.live.0,
            self.live.0.saturating_sub(1),
            self.live.1
        );
        if self.server.refused > 0 {
            println!(
                "refused       {} connections at the fd limit",
                self.server.refused
            );
        }
        println!(
            "errors        {} (client), {} (server i/o)",
            r.errors, self.server.io_errors
        );
    }
}

impl Demo {
    /// Runs the demo: server, idle connections, closed-loop load, report.
    ///
    /// # Errors
    ///
    /// When the server or a connection cannot be set up.
    pub fn run(&self) -> std::io::Result<Outcome> {
        let (idle, silent) = self.fit_fd_limit()?;
        let s = server::Server::start(server::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: self.threads,
            idle_timeout: self.idle_timeout,
            clock: None,
        })?;
        let addr = s.addr();
        if self.progress {
            println!(
                "server on http://{addr}, {} manager(s), idle timeout {:.1} s; opening {idle} idle \
connections (pinged) and {silent} silent ones",
                self.threads,
                self.idle_timeout.as_secs_f64()
            );
        }
        let idle_set = loadgen::Idle::open(addr, idle, silent, self.idle_timeout / 3, |opened| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while s.stats().accepted < opened as u64 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        })?;
        let load = loadgen::Load::start(addr, self.clients, self.client_threads)?;
        if self.progress {
            println!(
                "{} keep-alive clients on {} thread(s) for {:.0} s",
                self.clients,
                self.client_threads.max(1),
                self.duration.as_secs_f64()
            );
        }
        let start = Instant::now();
        let mut last = 0;
        let mut tick = 1;
        loop {
            let next = Duration::from_secs(tick).min(self.duration);
            if let Some(wait) = next.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            if self.progress {
                let now = load.requests();
                println!(
                    "[{:>2} s] {:>9.0} req/s   total {:>9}   errors {}   live connections {}   idle timeouts {}",
                    tick.min(self.duration.as_secs().max(1)),
                    (now - last) as f64 / (next.as_secs_f64() - (tick - 1) as f64).max(1e-3),
                    now,
                    load.errors(),
                    s.stats().live(),
                    s.stats().idle_timeouts,
                );
                last = now;
            }
            if next >= self.duration {
                break;
            }
            tick += 1;
        }
        // Sampled while every connection the client holds is still open.
        let mut server = s.stats();
        let live = s.live();
        let report = load.stop();
        let pings = idle_set.stop();
        // Requests are counted once the clients and the pings have stopped, so every response
        // a client counted is in the server's count too.
        server.requests = s.stats().requests;
        s.shutdown();
        Ok(Outcome {
            report,
            server,
            live,
            idle_opened: idle,
            silent_opened: silent,
            pings,
            threads: self.threads,
        })
    }

    /// Raises the soft fd limit to the hard one and scales the idle and silent connections
    /// down (keeping their ratio) when the limit cannot hold them: each connection costs two
    /// fds here (client and server end), plus a few for the managers.
    fn fit_fd_limit(&self) -> std::io::Result<(usize, usize)> {
        let limit = crate::sys::raise_fd_limit()?;
        let spare = 64 + 4 * (self.threads + self.client_threads) as u64;
        let room = (limit.saturating_sub(spare) / 2) as usize;
        let want = self.clients + self.idle + self.silent;
        if want <= room {
            return Ok((self.idle, self.silent));
        }
        let left = room.saturating_sub(self.clients);
        let idle = left * self.idle / (self.idle + self.silent).max(1);
        let silent = left - idle;
        if self.progress {
            println!(
                "open-file limit {limit}: holding {idle} idle and {silent} silent connections \
instead of {} and {} (raise it with `ulimit -n`)",
                self.idle, self.silent
            );
        }
        Ok((idle, silent))
    }
}
