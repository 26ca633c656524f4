//! Op names: what an event's metadata is called so that xprof counts its events as
//! framework ops.
//!
//! xprof's framework_op_stats, and the op figures of its overview page, count a host event
//! only when its metadata name parses as a TensorFlow op full name `<op name>:<OpType>`: split
//! at the first `:`, the op name matching `[A-Za-z0-9.][A-Za-z0-9_./]*` (newer versions also
//! take `>` and `-`) and the type `[A-Z_][a-zA-Z0-9_]*`. Ops are then keyed by the op name
//! alone. So every call site gets an op name of its own, made from its recorded name by
//! [`op_name_and_type`], and the readable name stays in the metadata's `display_name`, which
//! the trace viewer shows.
//!
//! Two call sites recorded under the same name (or under names that differ only in what
//! the rule replaces) would merge into one op: [`full_names`] keeps the plain name for the
//! first of them and suffixes the others `_2`, `_3`, ... The first is one recorded under its
//! op name exactly, if any, then they go in source order (file, line, module; events
//! recorded without a call site come first, by name). The order is the source's, not the
//! recording's, so the same program gets the same names on every run.
//!
//! Root step markers keep the name they were recorded with: xprof finds steps by those
//! names and shows them (`Train 3`), and a name without `:` is no op.

use std::collections::{BTreeMap, HashSet};

use trace_runtime::Callsite;

/// The op name of an event whose recorded name leaves nothing usable (empty, emoji only).
const UNNAMED: &str = "unnamed";

/// Op names xprof gives a meaning of its own: `IDLE` is the row of time without any op, and
/// `Iterator` marks tf.data pipeline stages, counted as waiting for input.
const RESERVED: [&str; 2] = ["IDLE", "Iterator"];

/// The type of an op whose last path segment has no letter or digit.
const NO_TYPE: &str = "Op";

/// One op to name: the metadata of a call site's events, or of the events recorded under
/// one name without a call site.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpSource<'a> {
    /// The name its events were recorded with.
    pub(crate) recorded: &'a str,
    /// Where they were recorded, if at a call site.
    pub(crate) site: Option<&'static Callsite>,
    /// Root step markers: the name stays as recorded.
    pub(crate) marker: bool,
}

/// The op name and type xprof reads for events recorded as `recorded`, before any suffix
/// that tells call sites apart.
///
/// The name is `recorded` with Rust's `::` as `/` (xprof's name scope separator), every run
/// of other characters that an op name cannot hold (spaces, quotes, a lone `:`, control
/// characters, anything outside ASCII) as one `_`, and no `_` or `/` at either end. The type
/// is the last path segment in CamelCase. Both always parse.
///
/// A name that ends with a single `:` and a type (`[A-Z][A-Za-z0-9_]*`, not a reserved one)
/// names its type itself, as TensorFlow's op full names do: `load_batch:Preprocessing` is an
/// op of type `Preprocessing`, which xprof's Input Pipeline Analysis counts as input work
/// (so are `Read` and `Enqueue`).
///
/// ```text
/// my_crate::train::forward  ->  my_crate/train/forward  Forward
/// load batch                ->  load_batch              LoadBatch
/// data::load:Preprocessing  ->  data/load               Preprocessing
/// 😀                         ->  unnamed                 Unnamed
/// ```
pub(crate) fn op_name_and_type(recorded: &str) -> (String, String) {
    if let Some((path, ty)) = explicit_type(recorded) {
        let (name, _) = op_name_and_type(path);
        return (name, ty.to_owned());
    }
    let mut name = String::with_capacity(recorded.len());
    let mut chars = recorded.chars().peekable();
    let mut replacing = false;
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            name.push('/');
            replacing = false;
        } else if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/') {
            name.push(c);
            replacing = false;
        } else if !replacing {
            name.push('_');
            replacing = true;
        }
    }
    let name = name.trim_matches(|c| matches!(c, '_' | '/'));
    let name = if name.is_empty() { UNNAMED } else { name };
    (name.to_owned(), op_type(name))
}

/// `(path, type)` of a name that ends with `:Type`, a single colon before a valid type that
/// is not reserved.
fn explicit_type(recorded: &str) -> Option<(&str, &str)> {
    let (path, ty) = recorded.rsplit_once(':')?;
    let valid = ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !RESERVED.contains(&ty);
    (valid && !path.ends_with(':') && !path.is_empty()).then_some((path, ty))
}

/// The CamelCase type of an op name: its last segment with a letter or digit, each word
/// (between `_` and `.`) capitalized.
fn op_type(name: &str) -> String {
    let segment = name
        .rsplit('/')
        .find(|s| s.bytes().any(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("");
    let mut ty = String::with_capacity(segment.len() + NO_TYPE.len());
    for word in segment.split(['_', '.']) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            ty.push(first.to_ascii_uppercase());
            ty.push_str(chars.as_str());
        }
    }
    // A type starts with a capital letter (or `_`, which TensorFlow keeps for its own ops).
    if !ty.starts_with(|c: char| c.is_ascii_uppercase()) {
        ty.insert_str(0, NO_TYPE);
    }
    // Newer xprof versions take the type `IDLE` for idle time, as older ones take the name.
    if ty == "IDLE" {
        ty = "Idle".to_owned();
    }
    ty
}

/// The metadata names of `ops`, in their order: op full names, distinct per op, or a root
/// step marker's own name.
///
/// Op names that two ops share are told apart by a suffix (see the module docs); a suffixed
/// name never equals another op's name, a reserved name, or the op name of a step marker
/// whose own name holds a `:`.
pub(crate) fn full_names(ops: &[OpSource<'_>]) -> Vec<String> {
    let mut names = vec![String::new(); ops.len()];
    // Names no op may take: xprof's own, and those that markers parse to.
    let mut reserved: HashSet<&str> = RESERVED.into_iter().collect();
    // Ops by op name; each op's place in its group is decided below.
    let mut groups: BTreeMap<String, (String, Vec<usize>)> = BTreeMap::new();
    for (index, op) in ops.iter().enumerate() {
        if op.marker {
            names[index] = op.recorded.to_owned();
            if let Some((op_name, _)) = op.recorded.split_once(':') {
                reserved.insert(op_name);
            }
        } else {
            let (name, ty) = op_name_and_type(op.recorded);
            groups.entry(name).or_insert((ty, Vec::new())).1.push(index);
        }
    }
    let mut used: HashSet<String> = groups.keys().cloned().collect();
    used.extend(reserved.iter().map(|name| name.to_string()));
    for (name, (ty, mut members)) in groups {
        // An op recorded under its op name exactly keeps it; then source order, then the
        // recorded name (events without a call site differ in nothing else).
        members.sort_by_key(|&index| {
            let op = &ops[index];
            (
                op.recorded != name,
                source_order(op.site),
                op.recorded,
                index,
            )
        });
        let mut plain = !reserved.contains(name.as_str());
        let mut k = 1;
        for index in members {
            let unique = if std::mem::take(&mut plain) {
                name.clone()
            } else {
                loop {
                    k += 1;
                    let candidate = format!("{name}_{k}");
                    if used.insert(candidate.clone()) {
                        break candidate;
                    }
                }
            };
            names[index] = format!("{unique}:{ty}");
        }
    }
    names
}

/// Where a call site is in the source, to order the ops that share a name: events without a
/// call site first.
fn source_order(site: Option<&'static Callsite>) -> Option<(&'static str, u32, &'static str)> {
    site.map(|site| (site.file(), site.line(), site.module_path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xprof's `ParseTfOpFullname` for a TensorFlow op, with the stricter op name pattern of
    /// older versions: `(op name, type)` if `full` parses.
    fn parse_tf_op(full: &str) -> Option<(&str, &str)> {
        let (name, ty) = full.split_once(':')?;
        let mut name_chars = name.chars();
        let name_ok = name_chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && name_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/'));
        let mut type_chars = ty.chars();
        let type_ok = type_chars
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && type_chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        (name_ok && type_ok).then_some((name, ty))
    }

    fn full(recorded: &str) -> String {
        let (name, ty) = op_name_and_type(recorded);
        format!("{name}:{ty}")
    }

    fn op(recorded: &str) -> OpSource<'_> {
        OpSource {
            recorded,
            site: None,
            marker: false,
        }
    }

    fn at(recorded: &'static str, site: &'static Callsite) -> OpSource<'static> {
        OpSource {
            recorded,
            site: Some(site),
            marker: false,
        }
    }

    fn marker(recorded: &str) -> OpSource<'_> {
        OpSource {
            recorded,
            site: None,
            marker: true,
        }
    }

    #[test]
    fn rust_paths_become_name_scopes_and_the_last_segment_the_type() {
        assert_eq!(
            full("my_crate::train::forward"),
            "my_crate/train/forward:Forward"
        );
        assert_eq!(full("load batch"), "load_batch:LoadBatch");
        assert_eq!(full("apply_gradients"), "apply_gradients:ApplyGradients");
        assert_eq!(full("matmul"), "matmul:Matmul");
        assert_eq!(full("Train"), "Train:Train");
        assert_eq!(full("HTTPServer::get"), "HTTPServer/get:Get");
        assert_eq!(full("model/dense"), "model/dense:Dense");
        assert_eq!(full("x/self"), "x/self:Self");
        assert_eq!(full("v1.2"), "v1.2:V12");
        assert_eq!(full("<impl Foo>::bar"), "impl_Foo_/bar:Bar");
        assert_eq!(full("conv::3d"), "conv/3d:Op3d");
        assert_eq!(full("trailing::_"), "trailing:Trailing");
    }

    #[test]
    fn a_name_ending_in_a_type_keeps_it() {
        assert_eq!(full("load_batch:Preprocessing"), "load_batch:Preprocessing");
        assert_eq!(full("data::load:Read"), "data/load:Read");
        assert_eq!(full("queue it:Enqueue"), "queue_it:Enqueue");
        assert_eq!(full("😀:Read"), "unnamed:Read");
        // Not a type: lower case, a path, reserved, or nothing before it.
        assert_eq!(full("a:b"), "a_b:AB");
        assert_eq!(full("a::Read"), "a/Read:Read");
        assert_eq!(full("x:IDLE"), "x_IDLE:XIDLE");
        assert_eq!(full(":Read"), "Read:Read");
        assert_eq!(full("x:Read-ahead"), "x_Read_ahead:XReadAhead");
    }

    #[test]
    fn hostile_names_always_parse_as_an_op() {
        let hostile = [
            "",
            " ",
            ":",
            "::",
            ":::",
            "a:b",
            "a::b::",
            "::leading",
            "name:Type",
            "quote\" back\\slash\nnew line\u{1}\u{7f} tab\t emoji 😀 </script>",
            "Train \"step\"\n😀",
            "😀",
            "🦀🦀",
            "名前 \"q\" \\ \n 🦀",
            "\0",
            "_",
            "__private",
            "/",
            "/self",
            "...",
            "-",
            "a>b-c",
            "IDLE",
            "idle",
            "i_d_l_e",
            "Iterator",
            "Iterator::Batch",
            "123",
            "_1",
        ];
        for recorded in hostile {
            let full = full(recorded);
            let (name, ty) = parse_tf_op(&full)
                .unwrap_or_else(|| panic!("{recorded:?} gave {full:?}, which does not parse"));
            assert_ne!(ty, "IDLE", "{recorded:?}");
            assert!(!name.contains(':'), "{recorded:?}");
        }
        assert_eq!(full(""), "unnamed:Unnamed");
        assert_eq!(full("😀"), "unnamed:Unnamed");
        assert_eq!(full(":::"), "unnamed:Unnamed");
        assert_eq!(full("a:b"), "a_b:AB");
        assert_eq!(full("Train \"step\"\n😀"), "Train_step:TrainStep");
        assert_eq!(full("名前 \"q\" \\ \n 🦀"), "q:Q");
        assert_eq!(full("__private"), "private:Private");
        assert_eq!(full("i_d_l_e"), "i_d_l_e:Idle");
        assert_eq!(full("123"), "123:Op123");
        assert_eq!(full("a>b-c"), "a_b_c:ABC");
    }

    static FIRST: Callsite = Callsite::new("load", "app::data", "src/data.rs", 10, 2);
    static SECOND: Callsite = Callsite::new("load", "app::data", "src/data.rs", 42, 2);
    static OTHER_FILE: Callsite = Callsite::new("load", "app", "src/a.rs", 99, 2);

    #[test]
    fn call_sites_that_share_a_name_are_told_apart_in_source_order() {
        // Met in any order, named in source order; events without a call site first.
        let ops = [
            at("load", &SECOND),
            op("load"),
            at("load", &FIRST),
            at("load", &OTHER_FILE),
            op("other"),
        ];
        assert_eq!(
            full_names(&ops),
            [
                "load_4:Load",
                "load:Load",
                "load_3:Load",
                "load_2:Load",
                "other:Other"
            ]
        );
        // Names that differ only in what the rule replaces are told apart too.
        assert_eq!(
            full_names(&[op("load batch"), op("load\"batch"), op("load_batch")]),
            [
                "load_batch_2:LoadBatch",
                "load_batch_3:LoadBatch",
                "load_batch:LoadBatch"
            ]
        );
    }

    #[test]
    fn a_suffixed_name_never_takes_another_ops_name() {
        let ops = [op("a"), op("a_2"), op("a "), op("a\n"), op("a_3")];
        let names = full_names(&ops);
        let op_names: HashSet<&str> = names.iter().map(|n| n.split(':').next().unwrap()).collect();
        assert_eq!(op_names.len(), ops.len(), "{names:?}");
        assert_eq!(names[1], "a_2:A2");
        assert_eq!(names[4], "a_3:A3");
    }

    #[test]
    fn reserved_names_go_to_no_op() {
        let names = full_names(&[op("IDLE"), op("IDLE "), op("Iterator")]);
        assert_eq!(names, ["IDLE_2:Idle", "IDLE_3:Idle", "Iterator_2:Iterator"]);
    }

    #[test]
    fn root_step_markers_keep_their_names() {
        let ops = [
            marker("Train"),
            op("Train"),
            marker("Train \"step\"\n😀"),
            marker(""),
            // A marker that parses as an op keeps its op name to itself.
            marker("load:Load"),
            op("load"),
        ];
        assert_eq!(
            full_names(&ops),
            [
                "Train",
                "Train:Train",
                "Train \"step\"\n😀",
                "",
                "load:Load",
                "load_2:Load"
            ]
        );
    }
}
