//! The project templates of `wasmp new`, embedded from `guests/templates` by `host/build.rs`:
//! one folder `<lang>-<kind>` per template, its `template.toml` saying how to build and try
//! the project, every other file copied with its placeholders filled in.

use anyhow::{Context, Result};
use clap::ValueEnum;
use serde::Deserialize;

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The guest contract, vendored into every project where its WIT tools look for
/// dependencies (`wit/deps/`).
const VENDORED_WIT: (&str, &str) = (
    "wit/deps/wasmp-worker/worker.wit",
    include_str!("../../../../../wit/worker.wit"),
);
/// The C binding of the contract, for C projects.
const WASMP_H: (&str, &str) = ("wasmp.h", include_str!("../../../../../guests/c/wasmp.h"));
/// The Python SDK, for Python projects.
const WASMP_GUEST_PY: (&str, &str) = (
    "wasmp_guest.py",
    include_str!("../../../../../guests/sdk/python/wasmp_guest.py"),
);

/// A guest language with templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// Rust for wasm32-wasip2, bindings by wit-bindgen from crates.io.
    Rust,
    /// C with clang and wasi-libc, on wasmp.h.
    C,
    /// Python compiled by componentize-py.
    Python,
}

/// What the worker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// A WASI command (`main`) using queues: `wasmp run`.
    Command,
    /// Functions the host calls by name: `wasmp run --invoke`.
    Exports,
    /// A function a pool calls once per input line: `wasmp pool --invoke`.
    PoolTask,
}

/// How to build and try a project, from its template's `template.toml`.
#[derive(Debug, Deserialize)]
pub(crate) struct Recipe {
    /// One line on what the project is.
    pub(crate) about: String,
    /// The build command, run in the project's directory.
    pub(crate) build: String,
    /// The command line that runs the built worker with `wasmp`.
    #[serde(rename = "try")]
    pub(crate) try_it: String,
    /// A shell command that succeeds when the build's toolchain is installed.
    pub(crate) probe: String,
    /// What to install when the probe fails.
    pub(crate) install: String,
}

/// One template: a language and a kind, its recipe and its files.
pub(crate) struct Template {
    pub(crate) lang: Lang,
    pub(crate) kind: Kind,
    folder: &'static str,
}

/// The placeholders a template's files may use.
pub(crate) struct Names<'a> {
    /// The project's name (its directory's): `my_worker`, `my-worker`.
    pub(crate) name: &'a str,
    /// The same in WIT's kebab case: `my-worker`.
    pub(crate) wit: String,
}

impl<'a> Names<'a> {
    pub(crate) fn new(name: &'a str) -> Names<'a> {
        Names {
            name,
            wit: name.replace('_', "-"),
        }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{{name}}", self.name)
            .replace("{{wit}}", &self.wit)
    }
}

impl Template {
    /// Every embedded template, in folder order.
    pub(crate) fn all() -> Vec<Template> {
        let mut folders: Vec<&'static str> = TEMPLATE_FILES
            .iter()
            .filter_map(|(path, _)| path.split_once('/').map(|(folder, _)| folder))
            .collect();
        folders.dedup();
        folders
            .into_iter()
            .map(|folder| {
                let (lang, kind) = folder
                    .split_once('-')
                    .and_then(|(lang, kind)| {
                        Some((
                            Lang::from_str(lang, false).ok()?,
                            Kind::from_str(kind, false).ok()?,
                        ))
                    })
                    .unwrap_or_else(|| {
                        panic!("guests/templates/{folder} is not named <lang>-<kind>")
                    });
                Template { lang, kind, folder }
            })
            .collect()
    }

    /// The template for `lang` and `kind`.
    pub(crate) fn find(lang: Lang, kind: Kind) -> Option<Template> {
        Template::all()
            .into_iter()
            .find(|t| t.lang == lang && t.kind == kind)
    }

    /// The kinds `lang` has templates for.
    pub(crate) fn kinds_of(lang: Lang) -> Vec<Kind> {
        Template::all()
            .into_iter()
            .filter(|t| t.lang == lang)
            .map(|t| t.kind)
            .collect()
    }

    /// Its recipe, with the names filled in.
    pub(crate) fn recipe(&self, names: &Names<'_>) -> Result<Recipe> {
        let text = self
            .own_files()
            .find(|(path, _)| *path == "template.toml")
            .map(|(_, text)| text)
            .with_context(|| format!("guests/templates/{} has no template.toml", self.folder))?;
        let mut recipe: Recipe = toml::from_str(text)
            .with_context(|| format!("guests/templates/{}/template.toml", self.folder))?;
        recipe.build = names.fill(&recipe.build);
        recipe.try_it = names.fill(&recipe.try_it);
        Ok(recipe)
    }

    /// The project's files: (path in the project, contents), the template's filled in,
    /// then the vendored contract and SDK.
    pub(crate) fn files(&self, names: &Names<'_>, recipe: &Recipe) -> Vec<(&'static str, String)> {
        let fill = |text: &str| {
            names
                .fill(text)
                .replace("{{build}}", &recipe.build)
                .replace("{{try}}", &recipe.try_it)
        };
        let mut files: Vec<(&'static str, String)> = self
            .own_files()
            .filter(|(path, _)| *path != "template.toml")
            .map(|(path, text)| (path, fill(text)))
            .collect();
        let sdk = match self.lang {
            Lang::Rust => None,
            Lang::C => Some(WASMP_H),
            Lang::Python => Some(WASMP_GUEST_PY),
        };
        files.extend(
            [Some(VENDORED_WIT), sdk]
                .into_iter()
                .flatten()
                .map(|(path, text)| (path, text.to_string())),
        );
        files
    }

    /// This template's embedded files, by path inside its folder.
    fn own_files(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        TEMPLATE_FILES.iter().filter_map(|&(path, text)| {
            let inside = path.strip_prefix(self.folder)?.strip_prefix('/')?;
            Some((inside, text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_has_a_recipe_and_every_language_a_template() {
        let names = Names::new("my_demo");
        for template in Template::all() {
            let recipe = template.recipe(&names).unwrap();
            assert!(!recipe.build.contains("{{"), "{}", recipe.build);
            assert!(recipe.try_it.contains("wasmp "), "{}", recipe.try_it);
            for (path, text) in template.files(&names, &recipe) {
                assert!(
                    !text.contains("{{"),
                    "{}/{path} has an unknown placeholder",
                    template.folder
                );
            }
        }
        for lang in Lang::value_variants() {
            assert!(
                !Template::kinds_of(*lang).is_empty(),
                "{lang:?} has no template"
            );
        }
    }

    #[test]
    fn names_are_filled_in_with_wit_in_kebab_case() {
        let names = Names::new("my_demo");
        assert_eq!(
            names.fill("{{name}} {{wit}}:worker"),
            "my_demo my-demo:worker"
        );
    }
}
