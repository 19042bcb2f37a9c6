//! The shape of the code, checked: which crate may depend on which (planner → plan ← runtime
//! ← connectors; the CLI on everything), no cycles between the modules of a crate, and files
//! small enough to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `weir-*` crates a manifest names in `section` (`dependencies`, `dev-dependencies`).
fn weir_deps(krate: &str, section: &str) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut current = String::new();
    let mut deps = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line.trim_matches(['[', ']']).to_string();
        } else if current == section && line.starts_with("weir-") {
            deps.insert(line.split(['=', '.', ' ']).next().unwrap().to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_in_one_direction() {
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let crates: Vec<String> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for krate in &crates {
        let allowed = match krate.as_str() {
            "weir-plan" => set(&[]),
            "weir-sql" | "weir-runtime" => set(&["weir-plan"]),
            "weir-connectors" => set(&["weir-plan", "weir-runtime"]),
            "weir-engine" => set(&["weir-plan", "weir-sql", "weir-runtime", "weir-connectors"]),
            "weir-cli" => set(&["weir-plan", "weir-sql", "weir-runtime", "weir-connectors", "weir-engine"]),
            other => panic!("crates/{other}: add it to this test with the crates it may depend on"),
        };
        for section in ["dependencies", "dev-dependencies"] {
            let deps = weir_deps(krate, section);
            let extra: Vec<_> = deps.difference(&allowed).collect();
            assert!(extra.is_empty(), "{krate} may not depend on {extra:?} ([{section}])");
        }
    }
    // the planner and the runtime know nothing of each other
    assert!(!weir_deps("weir-runtime", "dependencies").contains("weir-sql"));
    assert!(!weir_deps("weir-sql", "dependencies").contains("weir-runtime"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A crate's modules (`exec::pipeline`) and the modules each names through `crate::…`,
/// tests left out.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let name = |f: &Path| {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let rel = rel.to_string_lossy().replace('/', "::");
        match rel.as_str() {
            "lib" | "main" => String::new(),
            r => r.strip_suffix("::mod").unwrap_or(r).to_string(),
        }
    };
    let modules: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
        let me = name(f);
        let mut uses = BTreeSet::new();
        // `crate::a::b::Item` and `crate::{a::X, b::Y}`
        let mut paths = Vec::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                paths.extend(group.split(',').map(|p| p.trim().to_string()));
            } else {
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                paths.push(rest[..end].to_string());
            }
        }
        for path in paths {
            let parts: Vec<&str> = path.split("::").collect();
            let target = (1..=parts.len()).rev().map(|k| parts[..k].join("::")).find(|m| modules.contains(m));
            if let Some(t) = target.filter(|t| !t.is_empty() && *t != me) {
                uses.insert(t);
            }
        }
        graph.insert(me, uses);
    }
    graph
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            return Some(path[i..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_depends_on_itself_through_others() {
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        let graph = module_graph(&src);
        assert!(graph.len() >= 2, "{}: modules not found", src.display());
        if let Some(cycle) = find_cycle(&graph) {
            panic!("{}: modules in a cycle: {}", src.display(), cycle.join(" → "));
        }
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            graph.entry(a.to_string()).or_default().insert(b.to_string());
            graph.entry(b.to_string()).or_default();
        }
        graph
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])).map(|c| c.len()), Some(3));
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
}

#[test]
fn source_files_stay_small() {
    let mut files = Vec::new();
    for dir in ["crates", "src", "tests", "benches", "examples"] {
        if root().join(dir).exists() {
            rust_files(&root().join(dir), &mut files);
        }
    }
    for f in files {
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(lines <= 800, "{} has {lines} lines: split it (files stay under ~800)", f.display());
    }
}
