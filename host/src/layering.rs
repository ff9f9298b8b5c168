//! The dependency rules of `host/src`, checked by reading the code (see ARCHITECTURE.md).
//!
//! Each top-level module (a folder or a single file) may name only the modules listed for
//! it; the list is acyclic, so there are no import cycles between folders. A few modules
//! also may not name certain crates: the protocol and the queues know nothing of wasmtime,
//! the spawner nothing of WIT, the queues nothing of processes.
//!
//! Only code is read, not comments (doc links are not dependencies), and inside the crate
//! every item is named by its module path (`crate::grants::limits::Limits`, not the
//! re-export `crate::Limits`), so that every edge shows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and the modules it may name.
const ALLOWED: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("sync", &[]),
    ("stdio", &[]),
    ("engine", &[]),
    ("events", &[]),
    ("value", &[]),
    ("version", &[]),
    ("cluster", &["error"]),
    ("queue", &["cluster", "error", "events"]),
    ("grants", &["error", "queue"]),
    ("protocol", &["error", "grants", "queue"]),
    ("exit", &["protocol"]),
    ("metrics", &["events", "queue"]),
    ("link", &["error", "exit", "protocol", "queue", "stdio"]),
    ("hostfn", &["error", "link", "protocol", "value"]),
    (
        "worker",
        &["engine", "error", "exit", "grants", "protocol", "value"],
    ),
    (
        "runtime",
        &[
            "cluster", "engine", "error", "events", "grants", "hostfn", "link", "value", "version",
            "worker",
        ],
    ),
    (
        "process",
        &[
            "error", "events", "exit", "grants", "link", "protocol", "queue", "runtime", "stdio",
            "sync", "value",
        ],
    ),
    (
        "pool",
        &[
            "cluster", "error", "events", "exit", "grants", "link", "protocol", "queue", "runtime",
            "stdio", "sync", "value",
        ],
    ),
    ("serve", &["cluster", "grants", "pool", "runtime"]),
];

/// Paths (a module, or one file of one) that may not name these crates or paths.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("protocol", &["wasmtime", "rustix"]),
    (
        "queue",
        &["wasmtime", "std::process", "rustix::process", "crate::link"],
    ),
    ("grants", &["wasmtime"]),
    (
        "cluster",
        &["wasmtime", "std::process::Command", "rustix::process"],
    ),
    ("exit", &["wasmtime"]),
    ("link", &["wasmtime", "wit_bindgen"]),
    (
        "link/spawn.rs",
        &["crate::worker", "crate::protocol::Outcome"],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a module (all files of a folder, or one file), comments dropped.
fn code_of(module: &str) -> String {
    let root = src();
    let folder = root.join(module);
    let mut files = Vec::new();
    if folder.is_dir() {
        let mut stack = vec![folder];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
    } else {
        let file = root.join(module);
        files.push(if file.extension().is_some() {
            file
        } else {
            root.join(format!("{module}.rs"))
        });
    }
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
            without_comments(&text)
        })
        .collect()
}

/// The text with every `//` comment (doc comments included) cut off its line.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate modules `code` names as `crate::NAME`.
fn named_modules(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .map(|(at, _)| {
            code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .collect()
}

#[test]
fn every_module_names_only_the_modules_it_may() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, may) in ALLOWED {
        for named in named_modules(&code_of(module)) {
            if named == *module || may.contains(&named.as_str()) {
                continue;
            }
            if named.starts_with(|c: char| c.is_ascii_uppercase()) {
                problems.push(format!(
                    "{module} names crate::{named}: name it by its module path"
                ));
            } else if allowed.contains_key(named.as_str()) {
                problems.push(format!("{module} may not name crate::{named}"));
            } else {
                problems.push(format!(
                    "{module} names crate::{named}, a module the rules do not list"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_of_the_crate_has_a_rule() {
    let mut found: Vec<String> = std::fs::read_dir(src())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir() || path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| !["lib", "bin", "layering"].contains(&name.as_str()))
        .collect();
    found.sort();
    let mut listed: Vec<String> = ALLOWED.iter().map(|(m, _)| m.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "a module was added or removed: give it a rule"
    );
}

#[test]
fn the_rules_have_no_cycle() {
    // Each module may only name modules listed before it.
    let mut seen = BTreeSet::new();
    for (module, may) in ALLOWED {
        for dependency in *may {
            assert!(
                seen.contains(dependency),
                "{module} may name {dependency}, which is listed after it: a cycle is possible"
            );
        }
        seen.insert(*module);
    }
}

#[test]
fn boundaries_name_no_forbidden_crate() {
    let mut problems = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let code = code_of(module);
        for name in *forbidden {
            let uses = code.contains(&format!("{name}::")) || code.contains(&format!("use {name}"));
            if uses {
                problems.push(format!("{module} names {name}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scanner_sees_paths_and_skips_comments() {
    let code = "use crate::queue::Queue; // crate::pool\n/// [x](crate::Pool)\nlet x = crate::exit::code::FAILED;";
    assert_eq!(
        named_modules(&without_comments(code)),
        BTreeSet::from(["exit".to_string(), "queue".to_string()])
    );
}
