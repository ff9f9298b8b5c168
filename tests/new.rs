//! `wasmp new`: every template in `guests/templates` is scaffolded by the real binary,
//! built with the command it prints and run with the `wasmp` line it prints, so that a
//! template cannot rot. A language whose toolchain is missing here is skipped with a
//! message, unless `WASMP_REQUIRE_ALL_GUESTS=1` (CI), where it fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::{DEADLINE, WASMP, cache_dir, run_within, scratch, text};

/// For a build (a first Rust build fetches and compiles wit-bindgen; later ones reuse its
/// target dir) and for the first run of what it built, which compiles it: a Python
/// component (CPython inside, built anew each time) takes over a minute in a debug build on
/// two idle cores, several on a loaded machine.
const STEP_DEADLINE: Duration = Duration::from_secs(600);

/// What `wasmp new` printed when the toolchain probe failed.
const MISSING_TOOLCHAIN: &str = "the toolchain to build this project is missing here";

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/templates")
}

/// The template folders, as (lang, kind): `rust-pool-task` is ("rust", "pool-task").
fn templates() -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(templates_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .map(|path| {
            let folder = path.file_name().unwrap().to_string_lossy().into_owned();
            let (lang, kind) = folder.split_once('-').expect("<lang>-<kind>");
            (lang.to_string(), kind.to_string())
        })
        .collect();
    found.sort();
    found
}

#[track_caller]
fn assert_ran(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A shell command line run in `dir` as a user would type it, with this build's `wasmp`
/// first on the PATH and none of the outer cargo's settings.
fn shell(line: &str, dir: &Path) -> Command {
    let wasmp_dir = Path::new(WASMP).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(wasmp_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut command = Command::new("sh");
    command
        .args(["-c", line])
        // Its own process group, so that a deadline kills the build under it too.
        .process_group(0)
        .current_dir(dir)
        .env("PATH", path)
        .env("WASMP_CACHE_DIR", cache_dir())
        // No __pycache__ in a project: nothing to clean up, nothing to confuse a rebuild.
        .env("PYTHONDONTWRITEBYTECODE", "1");
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "WASMP_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// Scaffolds `lang-kind` with `wasmp new`, builds it with the printed build command and
/// runs the printed `wasmp` line, checking the output the template promises.
fn scaffold_build_and_run(lang: &str, kind: &str) {
    let recipe: toml::Table = toml::from_str(
        &std::fs::read_to_string(templates_dir().join(format!("{lang}-{kind}/template.toml")))
            .unwrap(),
    )
    .unwrap();
    let name = format!("t-{lang}-{kind}");
    let fill = |key: &str| {
        recipe[key]
            .as_str()
            .unwrap()
            .replace("{{name}}", &name)
            .replace("{{wit}}", &name)
    };
    let (build, try_it) = (fill("build"), fill("try"));

    let dir = scratch(&format!("new-{lang}-{kind}"));
    let mut new = Command::new(WASMP);
    new.args(["new", &name, "--lang", lang, "--kind", kind])
        .current_dir(&dir);
    let out = run_within(new, None, DEADLINE);
    assert_ran("wasmp new", &out);
    let printed = text(&out.stdout);
    for line in [format!("cd {name}"), build.clone(), try_it.clone()] {
        assert!(
            printed.contains(&format!("  {line}\n")),
            "{line:?} not printed:\n{printed}"
        );
    }
    let project = dir.join(&name);
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains(&build) && readme.contains(&try_it),
        "{readme}"
    );
    assert!(project.join("wit/deps/wasmp-worker/worker.wit").exists());

    if text(&out.stderr).contains(MISSING_TOOLCHAIN) {
        assert!(
            std::env::var_os("WASMP_REQUIRE_ALL_GUESTS").is_none_or(|v| v != "1"),
            "WASMP_REQUIRE_ALL_GUESTS=1 but {lang}-{kind} cannot be built: {}",
            text(&out.stderr)
        );
        eprintln!(
            "skipping the {lang}-{kind} template: {}",
            text(&out.stderr).trim()
        );
        return;
    }
    if lang == "rust" {
        // One target directory for every Rust template and run: wit-bindgen compiles once.
        let shared = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-target");
        std::fs::create_dir_all(&shared).unwrap();
        std::os::unix::fs::symlink(&shared, project.join("target")).unwrap();
    }
    assert_ran(
        &build,
        &run_within(shell(&build, &project), None, STEP_DEADLINE),
    );
    let out = run_within(shell(&try_it, &project), None, STEP_DEADLINE);
    assert_ran(&try_it, &out);
    let stdout = text(&out.stdout);
    for expected in recipe["expect"].as_array().unwrap() {
        let expected = expected.as_str().unwrap();
        assert!(
            stdout.lines().any(|l| l == expected),
            "{expected:?} not in:\n{stdout}"
        );
    }
}

/// One test per template, so that they build and run side by side (the Rust ones share a
/// target directory: cargo's lock takes them in turn). A template folder missing here fails
/// `every_template_is_tested`.
macro_rules! template_tests {
    ($($test:ident: $lang:literal $kind:literal;)*) => {
        const TESTED: &[(&str, &str)] = &[$(($lang, $kind)),*];
        $(
            #[test]
            fn $test() {
                scaffold_build_and_run($lang, $kind);
            }
        )*
    };
}

template_tests! {
    rust_command_template_builds_and_runs: "rust" "command";
    rust_exports_template_builds_and_runs: "rust" "exports";
    rust_pool_task_template_builds_and_runs: "rust" "pool-task";
    c_command_template_builds_and_runs: "c" "command";
    python_exports_template_builds_and_runs: "python" "exports";
    python_pool_task_template_builds_and_runs: "python" "pool-task";
}

#[test]
fn every_template_is_tested() {
    let tested: Vec<(String, String)> = TESTED
        .iter()
        .map(|(l, k)| (l.to_string(), k.to_string()))
        .collect();
    for template in templates() {
        assert!(tested.contains(&template), "{template:?} has no test here");
    }
}

#[test]
fn new_refuses_an_existing_path_and_a_kind_the_language_lacks() {
    let dir = scratch("new-refuses");
    std::fs::create_dir(dir.join("taken")).unwrap();
    std::fs::write(dir.join("taken/keep.txt"), "mine").unwrap();
    let mut new = Command::new(WASMP);
    new.args(["new", "taken"]).current_dir(&dir);
    let out = run_within(new, None, DEADLINE);
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("never writes into an existing directory"));
    assert_eq!(
        std::fs::read_to_string(dir.join("taken/keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(dir.join("taken")).unwrap().count(), 1);

    for (args, needle) in [
        (
            &["new", "x", "--lang", "c", "--kind", "exports"][..],
            "--lang c has --kind command",
        ),
        (&["new", "My-Worker"][..], "the project name"),
    ] {
        let mut new = Command::new(WASMP);
        new.args(args).current_dir(&dir);
        let out = run_within(new, None, DEADLINE);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
    }
    assert!(!dir.join("x").exists() && !dir.join("My-Worker").exists());
}

#[test]
fn a_missing_toolchain_still_writes_the_files_and_names_what_to_install() {
    // A PATH with a shell and nothing else: every probe fails.
    let dir = scratch("new-no-toolchain");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("sh")).unwrap();
    let mut new = Command::new(WASMP);
    new.args(["new", "lonely", "--lang", "python"])
        .current_dir(&dir)
        .env("PATH", &bin);
    let out = run_within(new, None, DEADLINE);
    assert_ran("wasmp new", &out);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(MISSING_TOOLCHAIN), "{stderr}");
    assert!(
        stderr.contains("pip install componentize-py==0.25.1"),
        "{stderr}"
    );
    for file in ["app.py", "wasmp_guest.py", "wit/world.wit", "README.md"] {
        assert!(dir.join("lonely").join(file).exists(), "{file}");
    }
}

#[test]
fn readme_shows_the_rust_command_template_as_wasmp_new_prints_it() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let recipe: toml::Table = toml::from_str(
        &std::fs::read_to_string(templates_dir().join("rust-command/template.toml")).unwrap(),
    )
    .unwrap();
    for key in ["build", "try"] {
        let line = recipe[key].as_str().unwrap().replace("{{name}}", "demo");
        assert!(
            readme.contains(&line),
            "README.md's first worker lacks {line:?}"
        );
    }
    assert!(readme.contains("wasmp new demo"));
}
