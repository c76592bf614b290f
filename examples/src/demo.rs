//! The self-driving demo: server, idle connections, closed-loop load and the final report
//! (shared by the `http_server` example and the integration test).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::{loadgen, server};

/// The self-driving demo (also run by the integration test in quick mode).
pub struct Demo {
    /// Keep-alive connections in the closed loop.
    pub clients: usize,
    /// Silent connections held open.
    pub idle: usize,
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
    /// Idle connections the client opened.
    pub idle_opened: usize,
    /// Server threads.
    pub threads: usize,
}

impl Outcome {
    /// Whether the run counts as a success.
    pub fn ok(&self) -> bool {
        self.report.errors == 0 && self.report.requests > 0
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
        println!(
            "connections   {} live ({} active + {} idle opened), {} accepted",
            self.server.live(),
            self.server.live().saturating_sub(self.idle_opened as u64),
            self.idle_opened,
            self.server.accepted
        );
        println!(
            "manager       {} live fd registrations, {} live timers",
            self.live.0, self.live.1
        );
        println!("idle timeouts {} fired", self.server.idle_timeouts);
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
        let s = server::Server::start(server::Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: self.threads,
            idle_timeout: self.idle_timeout,
            clock: None,
        })?;
        let addr = s.addr();
        if self.progress {
            println!(
                "server on http://{addr}, {} manager(s); opening {} idle connections",
                self.threads, self.idle
            );
        }
        let idle = loadgen::open_idle(addr, self.idle, |opened| {
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
                    "[{:>2} s] {:>9.0} req/s   total {:>9}   errors {}",
                    tick.min(self.duration.as_secs().max(1)),
                    (now - last) as f64 / (next.as_secs_f64() - (tick - 1) as f64).max(1e-3),
                    now,
                    load.errors()
                );
                last = now;
            }
            if next >= self.duration {
                break;
            }
            tick += 1;
        }
        // Sampled while every connection is still open.
        let mut server = s.stats();
        let live = s.live();
        let report = load.stop();
        // Requests are counted once the clients have stopped, so every response a client
        // counted is in the server's count too.
        server.requests = s.stats().requests;
        let idle_opened = idle.len();
        drop(idle);
        s.shutdown();
        Ok(Outcome {
            report,
            server,
            live,
            idle_opened,
            threads: self.threads,
        })
    }
}
