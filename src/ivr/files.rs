//! `switchboard flow test [PATH]`: flow test files on disk, run offline.
//!
//! PATH is a folder (every `*.test.toml` under it), one test file, or a
//! flow script (`x.rhai`, whose tests are `x.test.toml` beside it). A test
//! file names its script with `flow = "..."`, else it is the file's name
//! with `.rhai` for `.test.toml`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::engine::{FlowEngine, Limits};
use super::testing::{self, TestFile};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub passed: usize,
    pub failed: usize,
}

/// The test files PATH stands for, sorted.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        let name = path.to_string_lossy();
        if name.ends_with(".test.toml") {
            return Ok(vec![path.to_path_buf()]);
        }
        if let Some(stem) = name.strip_suffix(".rhai") {
            let t = PathBuf::from(format!("{stem}.test.toml"));
            return if t.is_file() {
                Ok(vec![t])
            } else {
                Err(format!(
                    "{} has no tests ({} is missing)",
                    path.display(),
                    t.display()
                ))
            };
        }
        return Err(format!(
            "{}: give a folder, a .test.toml file or a .rhai flow",
            path.display()
        ));
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for e in entries {
            let p = e.map_err(|e| e.to_string())?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".test.toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Runs the tests PATH stands for and writes a report; `Err` only when
/// nothing could be run.
pub fn run(path: &Path, out: &mut impl Write) -> Result<Summary, String> {
    let files = discover(path)?;
    if files.is_empty() {
        return Err(format!(
            "no flow tests (*.test.toml) under {}",
            path.display()
        ));
    }
    let engine = FlowEngine::new(Limits::default());
    let mut s = Summary::default();
    for f in files {
        s.files += 1;
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let file = match TestFile::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(out, "{}\n  ✗ the file is not valid: {e}", f.display());
                s.failed += 1;
                continue;
            }
        };
        let script = match &file.flow {
            Some(name) => f.parent().unwrap_or(Path::new(".")).join(name),
            None => PathBuf::from(f.to_string_lossy().replace(".test.toml", ".rhai")),
        };
        let _ = writeln!(out, "{} ({})", f.display(), script.display());
        let source = match std::fs::read_to_string(&script) {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(out, "  ✗ cannot read the flow {}: {e}", script.display());
                s.failed += file.cases.len().max(1);
                continue;
            }
        };
        let name = script
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let flow = match engine.compile(&name, 0, &source) {
            Ok(f) => f,
            Err(d) => {
                let _ = writeln!(
                    out,
                    "  ✗ {}:{}:{}: {}",
                    script.display(),
                    d.line,
                    d.column,
                    d.message
                );
                s.failed += file.cases.len().max(1);
                continue;
            }
        };
        for case in &file.cases {
            let r = testing::run_case(&engine, &flow, case);
            if r.passed {
                s.passed += 1;
                let _ = writeln!(out, "  ✓ {}", r.name);
            } else {
                s.failed += 1;
                let _ = writeln!(out, "  ✗ {}", r.name);
                for line in r.diff.unwrap_or_default().lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\n{} passed, {} failed ({} files)",
        s.passed, s.failed, s.files
    );
    Ok(s)
}
