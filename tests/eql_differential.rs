//! Differential test: random EQL queries over random events, evaluated by vigil::eql and by the Python reference
//! oracle in shared/eql-oracle (the `eql` 1.0.1 library re-evaluated with Elasticsearch semantics). The oracle is a
//! cross-check, not ground truth (the conformance suite is): constructs where it is known to be wrong are not
//! generated, see `Gen`.
//!
//! Oracle Python: `$VIGIL_EQL_PYTHON`, else `${CARGO_TARGET_DIR:-target}/eql-oracle-venv/bin/python`, created on
//! first use with `pip install eql==1.0.1`. Without the oracle or PyPI the test prints `skipped: …` and passes.
//! `VIGIL_EQL_DIFF_SEED=N` explores another random case (the default seed keeps CI deterministic).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "../benches/support/split_mix.rs"]
mod split_mix;

use serde_json::{Value as Json, json};
use split_mix::SplitMix64;
use vigil::eql::{CompileOptions, compile, parse};

const EQL_VERSION: &str = "1.0.1";
const EVENTS: usize = 50;
const EVENT_QUERIES: usize = 500;
const SEQUENCE_QUERIES: usize = 60;

/// Runs many queries in one interpreter: the oracle's CLI costs ~0.5 s of start-up per query.
const DRIVER: &str = r#"
import json, sys
oracle_dir, events_path, queries_path = sys.argv[1:4]
sys.path.insert(0, oracle_dir)
import eql
import eql_oracle
events = eql_oracle.load_events(events_path)
with open(queries_path, encoding="utf-8") as fh:
    queries = [json.loads(line) for line in fh if line.strip()]
for text in queries:
    try:
        _, _, matches = eql_oracle.run(text, events, "es", "@timestamp")
        out = {"matches": matches}
    except eql.EqlError as e:
        out = {"error": "parse: %s" % e}
    except Exception as e:  # an oracle crash is reported as a disagreement, not a test abort
        out = {"error": "crash: %s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out) + "\n")
"#;

// ------------------------------------------------------------------------------------------------------------
// Oracle discovery
// ------------------------------------------------------------------------------------------------------------

fn oracle_script() -> Result<PathBuf, String> {
    let shared = std::env::var_os("VIGIL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let script = shared.join("eql-oracle/eql_oracle.py");
    if script.is_file() {
        Ok(script)
    } else {
        Err(format!("no oracle at {}", script.display()))
    }
}

fn has_eql(python: &Path) -> bool {
    let check = format!(
        "import importlib.metadata as m, sys; sys.exit(m.version('eql') != '{EQL_VERSION}')"
    );
    Command::new(python)
        .args(["-c", &check])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_step(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        Err(format!("{cmd:?} failed: {}", tail.join(" / ")))
    }
}

fn oracle_python() -> Result<PathBuf, String> {
    if let Some(python) = std::env::var_os("VIGIL_EQL_PYTHON") {
        let python = PathBuf::from(python);
        return if has_eql(&python) {
            Ok(python)
        } else {
            Err(format!(
                "VIGIL_EQL_PYTHON={} has no eql=={EQL_VERSION}",
                python.display()
            ))
        };
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| manifest.join(t)) // an absolute CARGO_TARGET_DIR replaces the manifest dir
        .unwrap_or_else(|| manifest.join("target"));
    let venv = target.join("eql-oracle-venv");
    let python = venv.join("bin/python");
    if python.is_file() && has_eql(&python) {
        return Ok(python);
    }
    println!(
        "eql_differential: creating {} with eql=={EQL_VERSION} (one-time set-up, needs PyPI)",
        venv.display()
    );
    run_step(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    // Few retries and a short timeout: without network, skip quickly instead of stalling the suite.
    run_step(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--retries",
        "1",
        "--timeout",
        "20",
        &format!("eql=={EQL_VERSION}"),
    ]))?;
    if has_eql(&python) {
        Ok(python)
    } else {
        Err(format!(
            "eql=={EQL_VERSION} not importable in {}",
            venv.display()
        ))
    }
}

// ------------------------------------------------------------------------------------------------------------
// Random generation
// ------------------------------------------------------------------------------------------------------------

impl SplitMix64 {
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ASCII only: case folding of non-ASCII text differs between Lucene and the oracle's ASCII-only lowering.
const NAMES: &[&str] = &[
    "cmd.exe",
    "CMD.EXE",
    "Cmd.exe",
    "powershell.exe",
    "PowerShell.EXE",
    "explorer.exe",
    "svchost.exe",
    "net.exe",
    "net1.exe",
    "rundll32.exe",
    "",
];
const USERS: &[&str] = &["alice", "Alice", "ALICE", "bob", "Bob", "carol", "SYSTEM"];
const MESSAGES: &[&str] = &[
    "User logged in",
    "user LOGGED out",
    "Error: code 42",
    "path C:\\Windows\\System32",
    "a*b?c",
    "  spaced  ",
    "quote \" inside",
    "",
];
const ARGS: &[&str] = &[
    "-c",
    "/C",
    "whoami",
    "WhoAmI",
    "net",
    "user",
    "--verbose",
    "-enc",
];
const TAGS: &[&str] = &["Prod", "prod", "dev", "TEST", "blue-team"];
const IPS: &[&str] = &[
    "10.0.0.5",
    "10.1.2.3",
    "192.168.1.20",
    "192.168.10.1",
    "172.16.5.4",
    "8.8.8.8",
    "127.0.0.1",
    "::1",
    "fe80::1",
    "2001:db8::7",
];
const CATEGORIES: &[&str] = &["process", "file", "network"];

const STRING_FIELDS: &[(&str, &[&str])] = &[
    ("process.name", NAMES),
    ("user.name", USERS),
    ("message", MESSAGES),
    ("process.args", ARGS),
    ("tags", TAGS),
    ("process.parent.name", NAMES),
];
const NUMBER_FIELDS: &[&str] = &["process.pid", "size"];

/// Puts `value` at a dotted path, either as nested objects or (sometimes) as a dotted key at some level.
fn insert(rng: &mut SplitMix64, doc: &mut serde_json::Map<String, Json>, path: &str, value: Json) {
    let parts: Vec<&str> = path.split('.').collect();
    // Split point: keys before it are nested objects, the rest one dotted key.
    let split = if parts.len() > 1 && rng.chance(35) {
        rng.below(parts.len() - 1)
    } else {
        parts.len() - 1
    };
    let mut map = doc;
    for part in &parts[..split] {
        let entry = map
            .entry(part.to_string())
            .or_insert_with(|| Json::Object(Default::default()));
        if !entry.is_object() {
            return; // would clobber a value: leave the field missing
        }
        map = entry.as_object_mut().unwrap();
    }
    map.insert(parts[split..].join("."), value);
}

fn random_string_value(rng: &mut SplitMix64, pool: &[&str], multi_percent: usize) -> Json {
    match rng.below(100) {
        n if n < 8 => Json::Null,
        n if n < 10 => json!([]),
        n if n < 10 + multi_percent => {
            let len = 1 + rng.below(3);
            Json::Array((0..len).map(|_| json!(rng.pick(pool))).collect())
        }
        _ => json!(rng.pick(pool)),
    }
}

fn random_events(rng: &mut SplitMix64) -> Vec<Json> {
    const BASE_MILLIS: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let mut offset = 0i64;
    (0..EVENTS)
        .map(|_| {
            offset += rng.range(1, 20_000); // strictly increasing: no timestamp ties to order
            let mut doc = serde_json::Map::new();
            let timestamp = if rng.chance(50) {
                json!(BASE_MILLIS + offset)
            } else {
                let (s, ms) = (offset / 1000, offset % 1000);
                json!(format!(
                    "2024-01-01T{:02}:{:02}:{:02}.{ms:03}Z",
                    s / 3600,
                    s / 60 % 60,
                    s % 60
                ))
            };
            doc.insert("@timestamp".into(), timestamp);
            let category = if rng.chance(5) {
                json!([rng.pick(CATEGORIES), rng.pick(CATEGORIES)])
            } else {
                json!(rng.pick(CATEGORIES))
            };
            insert(rng, &mut doc, "event.category", category);
            for (field, pool) in STRING_FIELDS {
                if rng.chance(12) {
                    continue; // missing
                }
                // Join keys stay scalar: ES keys on multi-valued fields are not a stable contract.
                let multi = match *field {
                    "user.name" => 0,
                    "process.args" | "tags" => 60,
                    _ => 10,
                };
                let value = random_string_value(rng, pool, multi);
                insert(rng, &mut doc, field, value);
            }
            if !rng.chance(12) {
                // Few distinct pids, so that `sequence by process.pid` finds some.
                let pid = json!(rng.range(0, 12) * 317);
                insert(rng, &mut doc, "process.pid", pid);
            }
            if !rng.chance(12) {
                let size = if rng.chance(30) {
                    json!(rng.range(-40, 400) as f64 + 0.5)
                } else {
                    json!(rng.range(-40, 1000))
                };
                insert(rng, &mut doc, "size", size);
            }
            if !rng.chance(15) {
                let ip = if rng.chance(10) {
                    json!([rng.pick(IPS), rng.pick(IPS)])
                } else {
                    json!(rng.pick(IPS))
                };
                insert(rng, &mut doc, "source.ip", ip);
            }
            if rng.chance(70) {
                doc.insert("flag".into(), json!(rng.chance(50)));
            }
            Json::Object(doc)
        })
        .collect()
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Gen<'a> {
    rng: &'a mut SplitMix64,
}

impl Gen<'_> {
    fn vary_case(&mut self, s: &str) -> String {
        match self.rng.below(4) {
            0 => s.to_ascii_uppercase(),
            1 => s
                .chars()
                .map(|c| {
                    if self.rng.chance(50) {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
            _ => s.to_string(),
        }
    }

    fn string_field(&mut self) -> (&'static str, &'static [&'static str]) {
        self.rng.pick(STRING_FIELDS)
    }

    fn string_literal(&mut self, pool: &[&str]) -> String {
        let s = if self.rng.chance(85) {
            let value = self.rng.pick(pool);
            self.vary_case(value)
        } else {
            self.rng.pick(&["zzz", "exe", "c", "E"]).to_string()
        };
        quote(&s)
    }

    /// A wildcard pattern derived from a pool value, so that it often matches something.
    fn wildcard(&mut self, pool: &[&str]) -> String {
        // Backslashes and literal `*`/`?` escaping are avoided: ES wildcard escaping is not what is tested here.
        let base: String = self
            .rng
            .pick(pool)
            .chars()
            .map(|c| {
                if matches!(c, '\\' | '*' | '?') {
                    '?'
                } else {
                    c
                }
            })
            .collect();
        let base = self.vary_case(&base);
        let chars: Vec<char> = base.chars().collect();
        let n = chars.len();
        let cut = if n == 0 { 0 } else { self.rng.below(n + 1) };
        let pattern: String = match self.rng.below(5) {
            0 => chars[..cut].iter().collect::<String>() + "*",
            1 => "*".to_string() + &chars[cut..].iter().collect::<String>(),
            2 => {
                "*".to_string()
                    + &chars[cut.min(n)..(cut + 2).min(n)]
                        .iter()
                        .collect::<String>()
                    + "*"
            }
            3 => chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i == cut { '?' } else { *c })
                .collect(),
            _ => base.clone(),
        };
        quote(&pattern)
    }

    fn regex(&mut self, case_insensitive: bool) -> String {
        // Only syntax Lucene and Python `re` read alike: no `\` classes, no Lucene `@ & < > ~ #` operators, and
        // no character ranges under `regex~` (whether Lucene folds their case depends on its version).
        const PLAIN: &[&str] = &[
            "cmd.exe",
            "CMD.EXE",
            "(cmd|net)[.]exe",
            ".*[.]exe",
            ".*shell.*",
            "net1?[.]exe",
            "c.d.*",
            "alice|bob",
            "a.*",
            "[A-Z].*",
            "[a-z]+",
            "user.*",
            ".*(in|out)",
            "-{1,2}[a-z]+",
            "Pro.",
            "",
            ".*",
        ];
        const NO_RANGES: &[&str] = &[
            "cmd.exe",
            "(cmd|net)[.]exe",
            ".*shell.*",
            "alice|bob",
            "a.*",
            "user.*",
            "pro.",
            "who.*",
        ];
        let pattern = if case_insensitive {
            let pattern = self.rng.pick(NO_RANGES);
            self.vary_case(pattern)
        } else {
            self.rng.pick(PLAIN).to_string()
        };
        quote(&pattern)
    }

    /// Non-negative only: the oracle's parser keeps `-2` as a negation expression, so `size != -2` becomes a
    /// script there (missing field: no match) while ES folds it to a literal (missing field: match).
    fn number(&mut self) -> String {
        match self.rng.below(4) {
            0 => format!("{}.5", self.rng.range(0, 300)),
            1 => self.rng.range(0, 5).to_string(),
            _ => self.rng.range(0, 1200).to_string(),
        }
    }

    fn list(&mut self, n: usize, mut item: impl FnMut(&mut Self) -> String) -> String {
        let items: Vec<String> = (0..n).map(|_| item(self)).collect();
        items.join(", ")
    }

    fn ci(&mut self) -> &'static str {
        if self.rng.chance(40) { "~" } else { "" }
    }

    /// A string-valued expression: mostly a field, sometimes a function of one.
    fn string_expr(&mut self) -> (String, &'static [&'static str]) {
        let (field, pool) = self.string_field();
        let expr = match self.rng.below(10) {
            0 => format!("concat({field}, {})", self.string_literal(pool)),
            1 => format!(
                "substring({field}, {}, {})",
                self.rng.range(-3, 3),
                self.rng.range(-2, 8)
            ),
            _ => field.to_string(),
        };
        (expr, pool)
    }

    /// A number-valued expression: a field, arithmetic, or a string function returning a number.
    fn number_expr(&mut self) -> String {
        let field = self.rng.pick(NUMBER_FIELDS);
        match self.rng.below(9) {
            0 => format!("{field} + {}", self.rng.range(0, 50)),
            1 => format!("{field} - {}", self.rng.range(0, 50)),
            2 => format!("{field} * {}", self.rng.range(0, 3)),
            // `/` and `%` not on `size`, which can be negative: the oracle rounds integer division down and takes
            // Python's modulo (-3 / 7 == -1, -7 % 3 == 2), ES truncates like Java (0 and -1).
            3 => format!("process.pid / {}", self.rng.range(1, 7)),
            4 => format!("process.pid % {}", self.rng.range(1, 7)),
            5 => format!("length({})", self.string_field().0),
            6 => format!(
                "indexOf{}({}, {})",
                self.ci(),
                self.string_field().0,
                quote(self.rng.pick(&["e", "E", ".", "a"]))
            ),
            _ => field.to_string(),
        }
    }

    fn compare(&mut self, left: &str, right: &str) -> Cond {
        let op = self.rng.pick(&["==", "!=", "<", "<=", ">", ">="]);
        Cond::compare(left, op, right)
    }

    fn equality(&mut self, left: &str, right: &str) -> Cond {
        let op = self.rng.pick(&["==", "!="]);
        Cond::compare(left, op, right)
    }

    /// `negated`: whether the atom ends up under an odd number of `not`s.
    fn atom(&mut self, negated: bool) -> Cond {
        match self.rng.below(21) {
            0 | 1 => {
                let (expr, pool) = self.string_expr();
                let literal = self.string_literal(pool);
                self.equality(&expr, &literal)
            }
            2 => {
                // Keyword range queries: lexicographic string order.
                let (field, pool) = self.string_field();
                let literal = self.string_literal(pool);
                self.compare(field, &literal)
            }
            3 | 4 => {
                let (expr, number) = (self.number_expr(), self.number());
                self.compare(&expr, &number)
            }
            5 => {
                let (number, field) = (self.number(), self.rng.pick(NUMBER_FIELDS));
                self.compare(&number, field)
            }
            6 => {
                let (field, pool) = self.string_field();
                let n = 1 + self.rng.below(3);
                Cond::atom(if n == 1 {
                    format!("{field} : {}", self.wildcard(pool))
                } else {
                    format!("{field} : ({})", self.list(n, |g| g.wildcard(pool)))
                })
            }
            7 | 8 => {
                let (field, pool) = self.string_field();
                let n = 1 + self.rng.below(4);
                let values = self.list(n, |g| g.string_literal(pool));
                Cond::atom(match self.rng.below(4) {
                    0 => format!("{field} in~ ({values})"),
                    1 => format!("{field} not in ({values})"),
                    2 => format!("not {field} in ({values})"),
                    _ => format!("{field} in ({values})"),
                })
            }
            9 => {
                let field = self.rng.pick(NUMBER_FIELDS);
                let n = 1 + self.rng.below(4);
                let values = self.list(n, |g| g.rng.range(0, 1000).to_string());
                let op = self.rng.pick(&["in", "not in"]);
                Cond::atom(format!("{field} {op} ({values})"))
            }
            10 | 11 => {
                let (field, pool) = self.string_field();
                let op = self.rng.pick(&["like", "like~"]);
                let n = 1 + self.rng.below(3);
                Cond::atom(if n == 1 {
                    format!("{field} {op} {}", self.wildcard(pool))
                } else {
                    format!("{field} {op} ({})", self.list(n, |g| g.wildcard(pool)))
                })
            }
            12 => {
                let (field, _) = self.string_field();
                let ci = self.rng.chance(40);
                let op = if ci { "regex~" } else { "regex" };
                Cond::atom(format!("{field} {op} {}", self.regex(ci)))
            }
            13 | 14 => {
                let function = self.rng.pick(&["startsWith", "endsWith", "stringContains"]);
                // The oracle's stringContains of a null expression is false, not null (ES): fields only there.
                let (expr, pool) = if function == "stringContains" {
                    let (field, pool) = self.string_field();
                    (field.to_string(), pool)
                } else {
                    self.string_expr()
                };
                let ci = self.ci();
                let needle = self.wildcard(pool).replace(['*', '?'], "");
                Cond::atom(format!("{function}{ci}({expr}, {needle})"))
            }
            15 => {
                const CIDRS: &[&str] = &[
                    "10.0.0.0/8",
                    "192.168.0.0/16",
                    "172.16.0.0/12",
                    "8.8.8.8/32",
                    // No bare addresses ("127.0.0.1"): the oracle's parser rejects them as invalid CIDRs.
                    "127.0.0.1/32",
                    "::1/128",
                    "fe80::/10",
                    "2001:db8::/32",
                ];
                let n = 1 + self.rng.below(3);
                let cidrs = self.list(n, |g| quote(g.rng.pick(CIDRS)));
                Cond::atom(format!("cidrMatch(source.ip, {cidrs})"))
            }
            16 => {
                let field = if self.rng.chance(50) {
                    self.string_field().0
                } else {
                    self.rng.pick(NUMBER_FIELDS)
                };
                self.equality(field, "null")
            }
            17 => {
                // No field-vs-field comparisons (`process.pid < size`): ES rejects them ("cannot compare a field
                // to another field"), so does the oracle, while vigil evaluates them as scripts.
                let (expr, pool) = self.string_expr();
                Cond::atom(format!(
                    "{expr} in ({})",
                    self.list(2, |g| g.string_literal(pool))
                ))
            }
            // The oracle's `between` returns null where ES returns "" (bound not found), so it is only compared
            // for equality with a non-empty string, outside `not`, where both mean "no match"; and bounds are
            // never empty (ES then returns the whole source, the oracle does not).
            18 if !negated => {
                let (field, pool) = self.string_field();
                let greedy = self.rng.pick(&["", ", true", ", false"]);
                let ci = self.ci();
                let (left, right) =
                    self.rng
                        .pick(&[("e", "e"), ("c", "."), ("A", "e"), ("l", "o")]);
                let literal = self.string_literal(pool);
                let literal = if literal == "\"\"" {
                    "\"lic\"".to_string()
                } else {
                    literal
                };
                Cond::atom(format!(
                    "between{ci}({field}, {}, {}{greedy}) == {literal}",
                    quote(left),
                    quote(right)
                ))
            }
            // 18 under `not` lands here too.
            19 | 18 => {
                let value = self.rng.pick(&["true", "false"]);
                self.equality("flag", value)
            }
            _ => {
                let left = format!(
                    "concat({}, \"-\", {})",
                    self.string_field().0,
                    self.string_field().0
                );
                let literal = self.string_literal(USERS);
                self.compare(&left, &literal)
            }
        }
    }

    fn condition(&mut self, depth: usize, negated: bool) -> Cond {
        if depth == 0 || self.rng.chance(35) {
            return self.atom(negated);
        }
        match self.rng.below(5) {
            0 => Cond::Not(Box::new(self.condition(depth - 1, !negated))),
            1 | 2 => Cond::And(
                Box::new(self.condition(depth - 1, negated)),
                Box::new(self.condition(depth - 1, negated)),
            ),
            _ => Cond::Or(
                Box::new(self.condition(depth - 1, negated)),
                Box::new(self.condition(depth - 1, negated)),
            ),
        }
    }

    fn category(&mut self, any_percent: usize) -> &'static str {
        if self.rng.chance(any_percent) {
            "any"
        } else {
            self.rng.pick(CATEGORIES)
        }
    }

    fn event_query(&mut self) -> Query {
        let category = self.category(70);
        let condition = self.condition(3, false);
        Query {
            vigil: format!("{category} where {}", condition.text()),
            oracle: format!("{category} where {}", condition.es_text(false)),
        }
    }

    fn sequence_query(&mut self) -> Query {
        let key = self.rng.pick(&["user.name", "process.pid", "?user.name"]);
        let span = self.rng.pick(&["5s", "30s", "2m", "10m", "1h"]);
        let stages = 2 + self.rng.below(2);
        let stages: Vec<(&str, Cond)> = (0..stages)
            .map(|_| {
                // Loose stages (`a or b`) so that a fair share of sequences complete.
                let condition = if self.rng.chance(50) {
                    Cond::Or(
                        Box::new(self.condition(1, false)),
                        Box::new(self.atom(false)),
                    )
                } else {
                    self.condition(1, false)
                };
                (self.category(60), condition)
            })
            .collect();
        let render = |text: &dyn Fn(&Cond) -> String| {
            let stages: Vec<String> = stages
                .iter()
                .map(|(category, cond)| format!("[{category} where {}]", text(cond)))
                .collect();
            format!("sequence by {key} with maxspan={span} {}", stages.join(" "))
        };
        Query {
            vigil: render(&|c| c.text()),
            oracle: render(&|c| c.es_text(false)),
        }
    }
}

/// A generated query, and the same query as ES' optimizer rewrites it, for the oracle.
struct Query {
    vigil: String,
    oracle: String,
}

/// A generated condition.
enum Cond {
    /// `negated`: the text of its negation as ES' optimizer writes it (comparisons only: `not a < 1` is `a >= 1`).
    Atom {
        text: String,
        negated: Option<String>,
    },
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

impl Cond {
    fn atom(text: String) -> Cond {
        Cond::Atom {
            text,
            negated: None,
        }
    }

    fn compare(left: &str, op: &str, right: &str) -> Cond {
        let negated_op = match op {
            "==" => "!=",
            "!=" => "==",
            "<" => ">=",
            "<=" => ">",
            ">" => "<=",
            _ => "<",
        };
        Cond::Atom {
            text: format!("{left} {op} {right}"),
            negated: Some(format!("{left} {negated_op} {right}")),
        }
    }

    fn text(&self) -> String {
        match self {
            Cond::Atom { text, .. } => text.clone(),
            Cond::Not(inner) => format!("not ({})", inner.text()),
            Cond::And(l, r) => format!("({}) and ({})", l.text(), r.text()),
            Cond::Or(l, r) => format!("({}) or ({})", l.text(), r.text()),
        }
    }

    /// The condition after ES' BooleanSimplification, which the oracle does not model: `not` pushed down to the
    /// leaves (De Morgan) and negated comparisons flipped. It matters for a missing field: `not (a < 1 and b)`
    /// is `a >= 1 or not b`, false for a missing `a` unless `not b` holds.
    fn es_text(&self, negate: bool) -> String {
        match self {
            Cond::Atom { text, negated } => match (negate, negated) {
                (false, _) => text.clone(),
                (true, Some(negated)) => negated.clone(),
                (true, None) => format!("not ({text})"),
            },
            Cond::Not(inner) => inner.es_text(!negate),
            Cond::And(l, r) | Cond::Or(l, r) => {
                let joiner = if matches!(self, Cond::And(..)) != negate {
                    "and"
                } else {
                    "or"
                };
                format!("({}) {joiner} ({})", l.es_text(negate), r.es_text(negate))
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// The test
// ------------------------------------------------------------------------------------------------------------

/// vigil's matches, sorted (result order is not compared: the oracle reports sequences as it completes them).
fn vigil_matches(query: &str, events: &[Json]) -> Result<Vec<Vec<usize>>, String> {
    let ast = parse(query).map_err(|e| format!("parse: {e}"))?;
    let compiled =
        compile(&ast, &CompileOptions::default()).map_err(|e| format!("compile: {e}"))?;
    let mut matches: Vec<Vec<usize>> = compiled
        .search(events, None)
        .into_iter()
        .map(|hit| {
            hit.events
                .into_iter()
                .map(|i| i.expect("no missing-event stages are generated"))
                .collect()
        })
        .collect();
    matches.sort();
    Ok(matches)
}

fn oracle_matches(line: &str) -> Result<Vec<Vec<usize>>, String> {
    let out: Json = serde_json::from_str(line).unwrap();
    if let Some(error) = out.get("error") {
        return Err(error.as_str().unwrap_or_default().to_string());
    }
    let mut matches: Vec<Vec<usize>> = serde_json::from_value(out["matches"].clone()).unwrap();
    matches.sort();
    Ok(matches)
}

#[test]
fn vigil_agrees_with_the_reference_oracle_on_random_queries() {
    let started = Instant::now();
    let script = match oracle_script() {
        Ok(script) => script,
        Err(reason) => return println!("skipped: {reason}"),
    };
    let python = match oracle_python() {
        Ok(python) => python,
        Err(reason) => return println!("skipped: {reason}"),
    };

    let seed = std::env::var("VIGIL_EQL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0E01_u64);
    let mut rng = SplitMix64(seed);
    let events = random_events(&mut rng);
    let mut generator = Gen { rng: &mut rng };
    let mut queries: Vec<Query> = (0..EVENT_QUERIES)
        .map(|_| generator.event_query())
        .collect();
    queries.extend((0..SEQUENCE_QUERIES).map(|_| generator.sequence_query()));

    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let queries_path = dir.path().join("queries.jsonl");
    let driver_path = dir.path().join("driver.py");
    let jsonl = |items: Vec<String>| items.join("\n") + "\n";
    std::fs::write(
        &events_path,
        jsonl(events.iter().map(Json::to_string).collect()),
    )
    .unwrap();
    std::fs::write(
        &queries_path,
        jsonl(
            queries
                .iter()
                .map(|q| json!(q.oracle).to_string())
                .collect(),
        ),
    )
    .unwrap();
    std::fs::write(&driver_path, DRIVER).unwrap();
    let output = Command::new(&python)
        .arg(&driver_path)
        .arg(script.parent().unwrap())
        .arg(&events_path)
        .arg(&queries_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oracle driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let oracle: Vec<&str> = stdout.lines().collect();
    assert_eq!(oracle.len(), queries.len(), "one oracle answer per query");

    let mut report = String::new();
    let mut disagreements = 0;
    // Queries whose result tells something: event queries matching some but not all events, matched sequences.
    let (mut selective_events, mut matched_sequences) = (0, 0);
    for (i, (query, oracle_line)) in queries.iter().zip(&oracle).enumerate() {
        let ours = vigil_matches(&query.vigil, &events);
        let theirs = oracle_matches(oracle_line);
        if let Ok(found) = &ours {
            if i < EVENT_QUERIES && !found.is_empty() && found.len() < EVENTS {
                selective_events += 1;
            } else if i >= EVENT_QUERIES && !found.is_empty() {
                matched_sequences += 1;
            }
        }
        if ours != theirs {
            disagreements += 1;
            if disagreements <= 15 {
                let _ = writeln!(report, "query:  {}", query.vigil);
                if query.oracle != query.vigil {
                    let _ = writeln!(
                        report,
                        "as ES optimizes it, sent to the oracle: {}",
                        query.oracle
                    );
                }
                let _ = writeln!(report, "vigil:  {ours:?}\noracle: {theirs:?}\n");
            }
        }
    }
    println!(
        "eql_differential: seed {seed:#x}, {} queries over {EVENTS} events: {selective_events}/{EVENT_QUERIES} event \
         queries selective, {matched_sequences}/{SEQUENCE_QUERIES} sequences matched; {disagreements} \
         disagreements; {:.1?}",
        queries.len(),
        started.elapsed()
    );
    // A generator whose queries match nothing (or everything) would compare little.
    assert!(
        selective_events > EVENT_QUERIES / 3 && matched_sequences > SEQUENCE_QUERIES / 4,
        "generated queries are not selective enough"
    );
    assert!(
        disagreements == 0,
        "{disagreements} of {} queries disagree (seed {seed:#x}; first 15 below)\n\n{report}events:\n{}",
        queries.len(),
        events
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i:>3} {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
