//! Spec links: every `draft §N.N` reference in the workspace's source names
//! a section that exists in `draft-notes/draft-sshq-transport.md`.
//!
//! The code marks each rule of the draft that it enforces with a one-line
//! comment at the enforcing line, `// draft §6.3: <the rule>`, as h3 does
//! for RFC 9114. When the draft is renumbered or a section removed, this
//! test names every reference left dangling.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The crates' source directories, relative to the workspace root.
const SOURCE_DIRS: &[&str] = &[
    "core/src",
    "quic-transport/src",
    "tcp-transport/src",
    "sshq/src",
];

const DRAFT: &str = "draft-notes/draft-sshq-transport.md";

/// Fewer rule annotations than this means they were lost (a bad merge, a
/// rewrite that dropped them), not that the code enforces fewer rules.
const MIN_RULE_ANNOTATIONS: usize = 30;

const MARK: &str = "draft §";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ has a parent directory")
        .to_path_buf()
}

/// Section numbers of the draft's numbered headings (`## 6.`, `### 6.3.`,
/// `#### 4.4.1.`).
fn draft_sections(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let heading = line.trim_start_matches('#');
            if heading.len() == line.len() {
                return None;
            }
            let number = heading.trim_start().split(' ').next()?;
            let number = number.strip_suffix('.')?;
            let numbered = !number.is_empty()
                && number
                    .split('.')
                    .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
            numbered.then(|| number.to_owned())
        })
        .collect()
}

/// The section number right after `draft §` (`6.3` in `draft §6.3:`).
fn section_after_mark(rest: &str) -> String {
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number.trim_end_matches('.').to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// One `draft §N.N` reference found in the source.
struct Reference {
    place: String,
    section: String,
    /// Written as a rule annotation: `// draft §N.N: <rule>` on its own line.
    is_rule: bool,
}

fn references(root: &Path) -> Vec<Reference> {
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source file");
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (index, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find(MARK) {
                let after = &rest[at + MARK.len()..];
                let section = section_after_mark(after);
                let is_rule = line.trim_start().starts_with("// draft §")
                    && after
                        .strip_prefix(section.as_str())
                        .and_then(|tail| tail.strip_prefix(": "))
                        .is_some_and(|rule| !rule.trim().is_empty());
                found.push(Reference {
                    place: format!("{shown}:{}", index + 1),
                    section,
                    is_rule,
                });
                rest = after;
            }
        }
    }
    found
}

#[test]
fn every_draft_reference_in_the_code_names_an_existing_section() {
    let root = workspace_root();
    let draft = std::fs::read_to_string(root.join(DRAFT)).expect("read the draft");
    let sections = draft_sections(&draft);
    assert!(
        sections.contains("6.3") && sections.contains("4.4.1") && sections.contains("9"),
        "the draft's headings were not recognised: {sections:?}"
    );

    let found = references(&root);
    let dangling: Vec<String> = found
        .iter()
        .filter(|r| !sections.contains(&r.section))
        .map(|r| format!("{}: draft §{:?} has no heading", r.place, r.section))
        .collect();
    assert!(
        dangling.is_empty(),
        "references to sections the draft does not have:\n{}",
        dangling.join("\n")
    );

    let rules = found.iter().filter(|r| r.is_rule).count();
    assert!(
        rules >= MIN_RULE_ANNOTATIONS,
        "only {rules} `// draft §N.N: <rule>` annotations (at least {MIN_RULE_ANNOTATIONS} expected)"
    );
}

#[test]
fn headings_and_marks_are_read_as_written() {
    let draft =
        "## 6. Framing\n### 6.3. Decoding Rules\n#### 4.4.1. x\n## Appendix A. Open\n#notes\n";
    let sections = draft_sections(draft);
    assert_eq!(
        sections.into_iter().collect::<Vec<_>>(),
        ["4.4.1", "6", "6.3"]
    );
    assert_eq!(section_after_mark("6.3: a boolean MUST be 0 or 1"), "6.3");
    assert_eq!(section_after_mark("12.9), so that"), "12.9");
    assert_eq!(section_after_mark("9."), "9");
    assert_eq!(section_after_mark("x"), "");
}
