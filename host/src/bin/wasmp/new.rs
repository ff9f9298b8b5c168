//! `wasmp new`: a small, ready worker project from one of the templates in
//! `guests/templates` (embedded in the binary), with the guest contract vendored so that it
//! builds with its language's stock toolchain, away from this repository.

mod templates;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, Result};
use clap::Args;

use crate::common::{code, say};
use templates::{Kind, Lang, Names, Template};

/// Create a worker project: sources, the wasmp WIT, a README with its build command and
/// the `wasmp` line that runs it.
///
/// Refuses to write into an existing path. When the language's toolchain is missing the
/// files are still written, and wasmp says what to install.
#[derive(Args)]
#[command(after_help = "\
Examples:
  wasmp new demo                                  # Rust, a command using queues
  wasmp new squares --lang rust --kind pool-task
  wasmp new greeter --lang python --kind exports
  wasmp new filter --lang c")]
pub(crate) struct NewCommand {
    /// The language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,

    /// What the worker is [default: command, or the language's first kind].
    #[arg(long, value_enum)]
    kind: Option<Kind>,

    /// The directory to create; its last component names the project (lowercase ASCII
    /// letters, digits, `-` and `_`, starting with a letter).
    #[arg(value_name = "NAME", value_parser = parse_project_path)]
    path: PathBuf,
}

impl NewCommand {
    pub(crate) fn execute(self) -> Result<ExitCode> {
        let kinds = Template::kinds_of(self.lang);
        let kind = self.kind.unwrap_or(if kinds.contains(&Kind::Command) {
            Kind::Command
        } else {
            kinds[0]
        });
        let Some(template) = Template::find(self.lang, kind) else {
            let names: Vec<String> = kinds.iter().map(|k| value_name(*k)).collect();
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "there is no {} template of kind {}; --lang {} has --kind {}\n",
                    value_name(self.lang),
                    value_name(kind),
                    value_name(self.lang),
                    names.join(", ")
                ),
            )
            .exit()
        };
        let name = project_name(&self.path).expect("checked by parse_project_path");
        let names = Names::new(name);
        let recipe = template.recipe(&names)?;

        if let Err(e) = create_new_dir(&self.path) {
            say!("error: cannot create {}: {e}", self.path.display());
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                say!("wasmp new never writes into an existing directory: pick another NAME");
            }
            return Ok(ExitCode::from(code::CANTCREAT));
        }
        for (file, contents) in template.files(&names, &recipe) {
            let path = self.path.join(file);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(&path, contents)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }

        println!(
            "Created {} ({} {}): {}",
            self.path.display(),
            value_name(template.lang),
            value_name(template.kind),
            recipe.about
        );
        println!("\nBuild it, then try it with wasmp:\n");
        println!("  cd {}", self.path.display());
        println!("  {}", recipe.build);
        println!("  {}", recipe.try_it);
        println!("\n{} says more.", self.path.join("README.md").display());
        if !toolchain_present(&recipe.probe, &self.path) {
            say!(
                "\nnote: the toolchain to build this project is missing here (`{}` failed); \
                 install {}",
                recipe.probe,
                recipe.install
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// A project path whose last component is a usable name in every template: a Cargo
/// package, a WIT package and world (kebab case once `_` becomes `-`), a file name.
fn parse_project_path(spec: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(spec);
    match project_name(&path) {
        Some(_) => Ok(path),
        None => Err(
            "the project name (the path's last component) must be lowercase ASCII \
                     letters, digits, `-` and `_`, each word starting with a letter \
                     (e.g. `my-worker`)"
                .into(),
        ),
    }
}

/// The project's name, when the path's last component is a valid one.
fn project_name(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let valid = name.split(['-', '_']).all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    valid.then_some(name)
}

/// Creates `path` and its missing parents; `AlreadyExists` when `path` is there (a file,
/// a directory or a dangling symlink), decided by the kernel, not by a racy look first.
fn create_new_dir(path: &Path) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(path)
}

/// Whether the template's toolchain probe succeeds, run by `sh` in the project directory.
fn toolchain_present(probe: &str, dir: &Path) -> bool {
    Command::new("sh")
        .args(["-c", probe])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// How clap spells a value: `pool-task`.
fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_checked_on_the_last_component() {
        for good in ["demo", "my-worker", "my_worker2", "a/b/demo", "../x"] {
            assert!(parse_project_path(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "2x", "my--w", "-w", "w-", "my-2x", "dé", "a/.."] {
            assert!(parse_project_path(bad).is_err(), "{bad}");
        }
    }
}
