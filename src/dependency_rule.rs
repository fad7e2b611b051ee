//! The dependency rule of `docs/architecture.md`, executable: every
//! `crate::<module>` a source file names must be an arrow the table in that
//! document allows. The document is the one place the rule is written; this
//! test reads it, so changing the rule means changing the document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Deliberate exceptions, each an arrow the table does not show, with why.
const ALLOWED_EXCEPTIONS: &[(&str, &str, &str)] = &[
    // The webhook is the EventSub transport's edge: it checks Twitch's HMAC
    // signature and parses the message before anything else sees it.
    ("http", "twitch", "src/http/webhook.rs"),
];

/// Modules every module may use: the `Secret` wrapper, the metrics
/// registry and the clock (the crate root's helpers, like `now_ms`, too).
const EVERYWHERE: &[&str] = &["secret", "metrics", "clock"];

/// `module → modules it may use`, from the "Dependency rule" table.
fn read_table(doc: &str) -> BTreeMap<String, BTreeSet<String>> {
    let section = doc.split("## Dependency rule").nth(1).unwrap_or_default();
    let mut table = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [module, may_use, ..] = cells[..] else { continue };
        // `name` and whatever follows it (a reason in words).
        let name = |cell: &str| cell.split('`').find(|part| !part.is_empty()).unwrap_or_default().trim().to_owned();
        if module.starts_with('`') {
            let allowed = may_use
                .split(',')
                .map(str::trim)
                .filter(|m| m.starts_with('`') || *m == "everything")
                .map(name)
                .collect();
            table.insert(name(module), allowed);
        }
    }
    table
}

/// The top-level module a file under `src/` belongs to (`main.rs`: `main`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The modules `crate::<module>` names in `code`, comments left out.
fn arrows(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (at, _) in line.match_indices("crate::") {
            // `twitch_sim::crate::` cannot occur; `$crate::` is a macro's own.
            if line[..at].ends_with('$') || line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &line[at + "crate::".len()..];
            let module: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if module.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                used.insert(module);
            }
        }
    }
    used
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every arrow of the source tree that the table does not allow, as
/// `file: from → to`.
fn violations(root: &Path) -> Vec<String> {
    let doc = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap_or_default();
    let table = read_table(&doc);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let (Some(from), Ok(code)) = (module_of(&src, &file), std::fs::read_to_string(&file)) else { continue };
        // The crate root only declares the modules; this file only names them.
        if from == "lib" || from == "dependency_rule" {
            continue;
        }
        let shown = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        let Some(allowed) = table.get(&from) else {
            found.push(format!("{shown}: module `{from}` is missing from the table"));
            continue;
        };
        for to in arrows(&code) {
            // `crate::now_ms()` and the like: the crate root's own helpers.
            if !src.join(&to).is_dir() && !src.join(format!("{to}.rs")).is_file() {
                continue;
            }
            let excepted = ALLOWED_EXCEPTIONS.iter().any(|(f, t, path)| *f == from && *t == to && *path == shown);
            let fine = to == from || allowed.contains("everything") || allowed.contains(&to);
            if !(fine || excepted || EVERYWHERE.contains(&to.as_str())) {
                found.push(format!("{shown}: {from} → {to}"));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arrow_between_modules_is_one_the_architecture_allows() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let table = read_table(&std::fs::read_to_string(root.join("docs/architecture.md")).unwrap());
        assert!(table.contains_key("domain") && table.contains_key("http"), "the table is found: {table:?}");
        let found = violations(root);
        assert!(found.is_empty(), "arrows docs/architecture.md does not allow:\n{}", found.join("\n"));
    }

    #[test]
    fn the_table_is_read_with_its_modules_and_their_allowed_uses() {
        let doc = "# x\n## Dependency rule\n\ntext\n\n| module | may use |\n|---|---|\n\
                   | `domain` | nothing |\n| `engine` | `domain`, `store` (the ports) |\n| `main` | everything |\n\n\
                   after\n| `not` | `read` |\n";
        let table = read_table(doc);
        assert_eq!(table.len(), 3);
        assert!(table["main"].contains("everything"));
        assert!(table["domain"].is_empty());
        assert_eq!(table["engine"], BTreeSet::from(["domain".to_owned(), "store".to_owned()]));
    }

    #[test]
    fn arrows_are_found_in_uses_and_paths_but_not_in_comments() {
        let code = "use crate::store::{A, B};\nlet x = crate::now_ms();\n// crate::http is only mentioned\n\
                    fn f() { crate::domain::x() } // crate::app too\nmacro! { $crate::inner }\n";
        assert_eq!(arrows(code), BTreeSet::from(["store".to_owned(), "now_ms".to_owned(), "domain".to_owned()]));
    }
}
