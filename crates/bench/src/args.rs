//! The command line of the benches that print their own tables (`harness = false` without
//! criterion's `main`), read the way criterion reads its own, so that one
//! `cargo bench -p ioman-bench -- FILTER --warm-up-time 1` means the same to every bench.
//!
//! - **The filter** is the one positional argument: a benchmark runs when its name (such as
//!   `echo/ioman/100`) contains it. Criterion takes the filter as a regular expression; these
//!   benches understand the part of that syntax a name filter needs: alternatives split by
//!   `|`, each a literal text, anchored at the start of the name by a leading `^` and at its
//!   end by a trailing `$` (`'^echo/ioman/|/1000$'`). `--exact` compares the whole name,
//!   `--ignored` runs nothing, as in criterion.
//! - **Modes**, as criterion: `cargo bench` passes `--bench` and the benchmarks are measured;
//!   without it (`cargo test --benches`, or the binary run by hand) or with `--test`, each
//!   selected benchmark runs once, quickly, to show that it works; `--list` prints the
//!   selected names (`NAME: benchmark`) and runs nothing.
//! - **Criterion's own options** (`--warm-up-time 1`, `--measurement-time=3`, `--noplot`,
//!   `--save-baseline base`, ...) are accepted and ignored, their values skipped, so a
//!   command line written for the criterion benches also runs these.
//! - **The bench's own options** (`--conns 100,1000` or `--conns=100,1000`) each have an
//!   environment variable; an argument wins over the variable, the variable over the default.
//!   An empty variable counts as unset. A value that does not parse, an unknown option or a
//!   second positional argument is an error (exit status 2), not a silent default.
//! - `--help` prints the bench's options, their variables and the filter's rules.
//!
//! A filter that selects nothing runs nothing, and the bench says so
//! ([`Args::select`]).

use std::fmt::Display;
use std::str::FromStr;

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `cargo bench`: measure the selected benchmarks.
    Bench,
    /// `cargo test --benches`, `--test`, or no `--bench`: run each selected benchmark once,
    /// briefly.
    Test,
    /// `--list`: print the selected names, run nothing.
    List,
}

/// One of a bench's own options: `--NAME VALUE` or `--NAME=VALUE`, and the environment
/// variable `env` that gives it when the argument is absent.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// The option's name without the dashes.
    pub name: &'static str,
    /// The environment variable that gives the option when no argument does.
    pub env: &'static str,
    /// A flag takes no separate value: `--NAME` means on, `--NAME=0` off.
    pub flag: bool,
    /// One line for `--help`: what the option is and its default.
    pub help: &'static str,
}

impl Opt {
    /// An option with a value.
    pub const fn value(name: &'static str, env: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            env,
            flag: false,
            help,
        }
    }

    /// A flag: on with `--NAME` (or the variable set to anything but `0`).
    pub const fn flag(name: &'static str, env: &'static str, help: &'static str) -> Opt {
        Opt {
            name,
            env,
            flag: true,
            help,
        }
    }
}

/// Criterion's options that take a value: accepted, ignored, their value skipped.
const CRITERION_VALUED: &[&str] = &[
    "color",
    "colour",
    "save-baseline",
    "baseline",
    "baseline-lenient",
    "format",
    "profile-time",
    "load-baseline",
    "sample-size",
    "warm-up-time",
    "measurement-time",
    "nresamples",
    "noise-threshold",
    "confidence-level",
    "significance-level",
    "plotting-backend",
    "output-format",
];
/// Their short forms.
const CRITERION_VALUED_SHORT: &[&str] = &["-c", "-s", "-b"];
/// Criterion's (and libtest's) options without a value that change nothing here.
const CRITERION_FLAGS: &[&str] = &[
    "verbose",
    "quiet",
    "noplot",
    "discard-baseline",
    "quick",
    "nocapture",
    "show-output",
    "include-ignored",
    "version",
];
const CRITERION_FLAGS_SHORT: &[&str] = &["-v", "-n", "-V"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    All,
    /// Alternatives, each a literal with its anchors.
    Contains(Vec<Pattern>),
    Exact(String),
    Nothing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    text: String,
    start: bool,
    end: bool,
}

impl Pattern {
    fn parse(alt: &str) -> Pattern {
        let (start, rest) = match alt.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, alt),
        };
        let (end, text) = match rest.strip_suffix('$') {
            Some(text) => (true, text),
            None => (false, rest),
        };
        Pattern {
            text: text.to_string(),
            start,
            end,
        }
    }

    fn matches(&self, name: &str) -> bool {
        match (self.start, self.end) {
            (false, false) => name.contains(&self.text),
            (true, false) => name.starts_with(&self.text),
            (false, true) => name.ends_with(&self.text),
            (true, true) => name == self.text,
        }
    }
}

/// A bench's parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    bench: &'static str,
    opts: &'static [Opt],
    mode: Mode,
    filter: Filter,
    /// The filter as given, for messages.
    filter_text: Option<String>,
    /// The options given as arguments, in order (a later one wins).
    given: Vec<(&'static str, String)>,
    help: bool,
}

impl Args {
    /// Parses this process's arguments for bench `bench` with its options `opts`; prints the
    /// usage and exits on `--help`, prints the error and exits with status 2 on a bad command
    /// line.
    pub fn parse(bench: &'static str, opts: &'static [Opt]) -> Args {
        match Args::parse_from(bench, opts, std::env::args().skip(1)) {
            Ok(a) if a.help => {
                print!("{}", a.usage());
                std::process::exit(0);
            }
            Ok(a) => a,
            Err(e) => {
                eprintln!("{bench}: {e}\n\n{}", Args::usage_of(bench, opts));
                std::process::exit(2);
            }
        }
    }

    /// Parses `args` (without the program name) for bench `bench` with its options `opts`.
    ///
    /// # Errors
    ///
    /// An unknown option, an option without its value, or a second positional argument.
    pub fn parse_from(
        bench: &'static str,
        opts: &'static [Opt],
        args: impl IntoIterator<Item = String>,
    ) -> Result<Args, String> {
        let mut bench_flag = false;
        let mut test = false;
        let mut list = false;
        let mut exact = false;
        let mut ignored = false;
        let mut help = false;
        let mut positional: Option<String> = None;
        let mut given = Vec::new();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            if a == "--" {
                continue;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (long, None),
                };
                match name {
                    "bench" => bench_flag = true,
                    "test" => test = true,
                    "list" => list = true,
                    "exact" => exact = true,
                    "ignored" => ignored = true,
                    "help" => help = true,
                    n if CRITERION_FLAGS.contains(&n) => {}
                    n if CRITERION_VALUED.contains(&n) => {
                        if inline.is_none() && args.next().is_none() {
                            return Err(format!("--{n} needs a value"));
                        }
                    }
                    n => {
                        let opt = opts
                            .iter()
                            .find(|o| o.name == n)
                            .ok_or_else(|| format!("unknown option --{n}"))?;
                        let value = match (inline, opt.flag) {
                            (Some(v), _) => v,
                            (None, true) => "1".to_string(),
                            (None, false) => {
                                args.next().ok_or_else(|| format!("--{n} needs a value"))?
                            }
                        };
                        given.push((opt.name, value));
                    }
                }
            } else if a == "-h" {
                help = true;
            } else if CRITERION_FLAGS_SHORT.contains(&a.as_str()) {
            } else if CRITERION_VALUED_SHORT.contains(&a.as_str()) {
                if args.next().is_none() {
                    return Err(format!("{a} needs a value"));
                }
            } else if a.starts_with('-') && a.len() > 1 {
                return Err(format!("unknown option {a}"));
            } else if let Some(first) = &positional {
                return Err(format!(
                    "one filter only (got {first:?} and {a:?}); join alternatives with `|`"
                ));
            } else {
                positional = Some(a);
            }
        }
        let filter = if ignored {
            Filter::Nothing
        } else {
            match &positional {
                None => Filter::All,
                Some(f) if exact => Filter::Exact(f.clone()),
                Some(f) => Filter::Contains(f.split('|').map(Pattern::parse).collect()),
            }
        };
        // As criterion: `--bench` without `--test` measures; anything else tests.
        let mode = if list {
            Mode::List
        } else if bench_flag && !test {
            Mode::Bench
        } else {
            Mode::Test
        };
        Ok(Args {
            bench,
            opts,
            mode,
            filter,
            filter_text: positional,
            given,
            help,
        })
    }

    /// What the command line asks for.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether the benchmark `name` is selected by the filter.
    pub fn selects(&self, name: &str) -> bool {
        match &self.filter {
            Filter::All => true,
            Filter::Contains(alts) => alts.iter().any(|p| p.matches(name)),
            Filter::Exact(e) => name == e,
            Filter::Nothing => false,
        }
    }

    /// Of `names` (every benchmark the bench would run with its counts), the selected ones,
    /// or `None` when nothing is to run: in [`Mode::List`] after printing each selected name
    /// as criterion does (`NAME: benchmark`); when the filter selects nothing, after saying
    /// so on stderr.
    pub fn select(&self, names: impl IntoIterator<Item = String>) -> Option<Vec<String>> {
        let all: Vec<String> = names.into_iter().collect();
        let chosen: Vec<String> = all.iter().filter(|n| self.selects(n)).cloned().collect();
        if self.mode == Mode::List {
            for n in &chosen {
                println!("{n}: benchmark");
            }
            return None;
        }
        if chosen.is_empty() {
            let why = match &self.filter {
                Filter::Nothing => "--ignored: no benchmark runs".to_string(),
                _ => format!(
                    "no benchmark matches the filter {:?}{}",
                    self.filter_text.as_deref().unwrap_or(""),
                    if matches!(self.filter, Filter::Exact(_)) {
                        " (--exact)"
                    } else {
                        ""
                    }
                ),
            };
            let literal = self
                .filter_text
                .as_deref()
                .is_some_and(|f| f.contains(|c: char| ".*+?()[]{}\\".contains(c)));
            let hint = if literal && !matches!(self.filter, Filter::Exact(_)) {
                " (this bench takes it as text: of criterion's regex syntax only `|`, a leading \
                 `^` and a trailing `$` count)"
            } else {
                ""
            };
            let sample: Vec<&str> = all.iter().take(6).map(String::as_str).collect();
            eprintln!(
                "{}: {why}{hint}; nothing run. Its benchmarks: {}{} (`--list` lists them)",
                self.bench,
                sample.join(", "),
                if all.len() > sample.len() {
                    ", ..."
                } else {
                    ""
                }
            );
            return None;
        }
        Some(chosen)
    }

    fn opt(&self, name: &str) -> &'static Opt {
        self.opts
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("{}: no option --{name} declared", self.bench))
    }

    /// Option `name` as text: the last argument that gives it, else its environment variable
    /// (unless empty), else `None`; with where it came from, for messages.
    fn raw(&self, name: &str) -> Option<(String, String)> {
        let opt = self.opt(name);
        if let Some((_, v)) = self.given.iter().rev().find(|(n, _)| *n == opt.name) {
            return Some((v.clone(), format!("--{}", opt.name)));
        }
        std::env::var(opt.env)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (v, opt.env.to_string()))
    }

    /// Option `name` as text, if given (argument over environment).
    ///
    /// # Panics
    ///
    /// If the bench did not declare `name`.
    pub fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(|(v, _)| v)
    }

    /// Option `name` parsed as a `T`, or `default` when not given.
    ///
    /// # Panics
    ///
    /// If the bench did not declare `name`. A value that does not parse ends the process
    /// with status 2.
    pub fn num<T: FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: Display,
    {
        match self.raw(name) {
            None => default,
            Some((v, from)) => v
                .trim()
                .replace('_', "")
                .parse()
                .unwrap_or_else(|e| self.fail(&format!("{from}={v:?}: {e}"))),
        }
    }

    /// Option `name` as a comma-separated list of counts (`100,1_000`), or `default`.
    ///
    /// # Panics
    ///
    /// If the bench did not declare `name`. A value that does not parse, or an empty list,
    /// ends the process with status 2.
    pub fn list(&self, name: &str, default: &[usize]) -> Vec<usize> {
        match self.raw(name) {
            None => default.to_vec(),
            Some((v, from)) => {
                let parsed: Result<Vec<usize>, _> = v
                    .split(',')
                    .map(|x| x.trim().replace('_', "").parse::<usize>())
                    .collect();
                match parsed {
                    Ok(l) if !l.is_empty() => l,
                    Ok(_) => self.fail(&format!("{from}={v:?}: an empty list")),
                    Err(e) => self.fail(&format!("{from}={v:?}: {e}")),
                }
            }
        }
    }

    /// Flag `name`: on when given (`--NAME`, `--NAME=1`, or its variable set to anything but
    /// `0`).
    ///
    /// # Panics
    ///
    /// If the bench did not declare `name`.
    pub fn flag(&self, name: &str) -> bool {
        self.raw(name).is_some_and(|(v, _)| v.trim() != "0")
    }

    fn fail(&self, msg: &str) -> ! {
        eprintln!("{}: {msg}", self.bench);
        std::process::exit(2);
    }

    /// The `--help` text.
    pub fn usage(&self) -> String {
        Args::usage_of(self.bench, self.opts)
    }

    fn usage_of(bench: &str, opts: &[Opt]) -> String {
        let mut s = format!(
            "usage: cargo bench -p ioman-bench --bench {bench} -- [FILTER] [OPTIONS]\n\n\
             FILTER: run the benchmarks whose names contain it (`--list` shows the names); \
             alternatives split by `|`, `^` and `$` anchor one at the name's start and end; \
             --exact: the whole name; --ignored: none.\n\
             Criterion's options (--warm-up-time, --measurement-time, ...) are ignored.\n\n\
             Options (an argument wins over its environment variable):\n"
        );
        for o in opts {
            let form = if o.flag {
                format!("--{}", o.name)
            } else {
                format!("--{} VALUE", o.name)
            };
            s.push_str(&format!("  {form:<24} {:<28} {}\n", o.env, o.help));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: &[Opt] = &[
        Opt::value("conns", "IOMAN_ARGS_TEST_CONNS", "connections"),
        Opt::value("seconds", "IOMAN_ARGS_TEST_SECONDS", "seconds"),
        Opt::flag(
            "short-read",
            "IOMAN_ARGS_TEST_SHORT_READ",
            "stop at a short read",
        ),
    ];

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse_from("test", OPTS, args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cargo_bench_passes_bench_and_criterion_options_are_skipped() {
        let a = parse(&[
            "--bench",
            "--warm-up-time",
            "1",
            "--measurement-time=3",
            "-n",
            "-s",
            "base",
            "ioman",
        ])
        .unwrap();
        assert_eq!(a.mode(), Mode::Bench);
        assert!(a.selects("echo/ioman/100"));
        // "1" and "base" were option values, not the filter.
        assert!(!a.selects("echo/mio/100"));
    }

    #[test]
    fn modes_follow_criterion() {
        assert_eq!(parse(&[]).unwrap().mode(), Mode::Test);
        assert_eq!(parse(&["--bench", "--test"]).unwrap().mode(), Mode::Test);
        assert_eq!(parse(&["--bench", "--list"]).unwrap().mode(), Mode::List);
    }

    #[test]
    fn filter_is_a_substring_with_alternatives_and_anchors() {
        let a = parse(&["--bench", "tokio|^echo/ioman/|/1000$"]).unwrap();
        assert!(a.selects("echo/tokio_current_thread/100"));
        assert!(a.selects("echo/ioman/100"));
        assert!(!a.selects("echo/ioman_pool_2/100"));
        assert!(a.selects("echo/mio/1000"));
        assert!(!a.selects("echo/mio/10000"));
        let exact = parse(&["--bench", "--exact", "echo/mio/100"]).unwrap();
        assert!(exact.selects("echo/mio/100"));
        assert!(!exact.selects("echo/mio/1000"));
        let none = parse(&["--bench", "--ignored", "mio"]).unwrap();
        assert!(!none.selects("echo/mio/100"));
        assert!(parse(&["--bench"]).unwrap().selects("anything"));
    }

    #[test]
    fn select_says_none_when_nothing_matches() {
        let a = parse(&["--bench", "nope"]).unwrap();
        assert_eq!(a.select(["x/a".to_string(), "x/b".to_string()]), None);
        let a = parse(&["--bench", "b"]).unwrap();
        assert_eq!(
            a.select(["x/a".to_string(), "x/b".to_string()]),
            Some(vec!["x/b".to_string()])
        );
        let list = parse(&["--list"]).unwrap();
        assert_eq!(list.select(["x/a".to_string()]), None);
    }

    #[test]
    fn argument_wins_over_environment_over_default() {
        // Only this test reads these variables.
        std::env::set_var("IOMAN_ARGS_TEST_SECONDS", "7");
        std::env::set_var("IOMAN_ARGS_TEST_CONNS", "");
        let a = parse(&["--bench", "--conns", "1,50_0"]).unwrap();
        assert_eq!(a.list("conns", &[9]), vec![1, 500]);
        assert_eq!(a.num("seconds", 3.0), 7.0);
        let b = parse(&["--bench", "--seconds=0.5"]).unwrap();
        assert_eq!(b.num("seconds", 3.0), 0.5);
        // An empty variable is unset.
        assert_eq!(b.list("conns", &[9]), vec![9]);
        assert!(!b.flag("short-read"));
        let c = parse(&["--short-read", "mio"]).unwrap();
        assert!(c.flag("short-read"));
        assert!(c.selects("echo/mio/1"));
        assert!(!parse(&["--short-read=0"]).unwrap().flag("short-read"));
    }

    #[test]
    fn bad_command_lines_are_errors() {
        assert!(parse(&["--bench", "--con=1"]).is_err());
        assert!(parse(&["--conns"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["-x"]).is_err());
        assert!(parse(&["--warm-up-time"]).is_err());
    }
}
