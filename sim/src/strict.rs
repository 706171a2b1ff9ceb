//! Strict reading of the files a user hands to `flagger replay`: where they come from (a regular
//! file or standard input, never a FIFO that may block forever), which fields they may hold (an
//! unknown field is an error naming it and the nearest known one), and error text in our own
//! words (`FILE:LINE: field: cause`) rather than a parser library's.

use std::io::Read as _;
use std::path::Path;

use serde_json::Value;

use crate::trace::InputError;

/// A file's text and how to name it.
#[derive(Debug, Clone)]
pub struct Source {
    /// How errors name the file: its path as given, or `stdin`.
    pub file: String,
    /// The timeline's name for it: the file name, or `stdin`.
    pub name: String,
    pub text: String,
    /// Read from standard input (`-`): the format is judged by content, not extension.
    pub stdin: bool,
}

/// Whether `path` is `-`, standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads `path`, or standard input for `-`. Anything but a regular file is refused: a FIFO
/// without a writer would block the replay forever, and a device may never end.
pub fn read_source(path: &Path) -> Result<Source, InputError> {
    if is_stdin(path) {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| InputError::new("stdin", format!("cannot read: {}", io_cause(&e))))?;
        let text =
            String::from_utf8(bytes).map_err(|_| InputError::new("stdin", "is not UTF-8 text"))?;
        return Ok(Source {
            file: "stdin".into(),
            name: "stdin".into(),
            text,
            stdin: true,
        });
    }
    let file = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| InputError::new(&file, format!("cannot read: {}", io_cause(&e))))?;
    if meta.is_dir() {
        return Err(InputError::new(&file, "is a directory, not a file"));
    }
    if !meta.is_file() {
        return Err(InputError::new(
            &file,
            "is not a regular file (a FIFO, socket or device could block forever); to read a stream, pass - and redirect it to standard input",
        ));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| InputError::new(&file, format!("cannot read: {}", io_cause(&e))))?;
    let text = String::from_utf8(bytes).map_err(|_| InputError::new(&file, "is not UTF-8 text"))?;
    let name = path
        .file_name()
        .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
    Ok(Source {
        file,
        name,
        text,
        stdin: false,
    })
}

/// An I/O error in words, without the OS error number.
fn io_cause(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "is a directory, not a file".into(),
        InvalidData => "is not UTF-8 text".into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_lowercase(),
                None => text.to_lowercase(),
            }
        }
    }
}

/// `text` with control characters escaped as Rust writes them (`\u{1b}`, and `\n`, `\r`, `\t`),
/// so that names and messages read from files or recorded from a cluster cannot drive a terminal
/// or forge lines. `keep_newlines` leaves line breaks alone (for text already laid out in lines).
pub fn escape_control(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.is_control() && !(keep_newlines && c == '\n'))
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The edit distance between `a` and `b` where swapping two neighbours counts as one edit
/// (optimal string alignment), so `stepWeigth` is one edit from `stepWeight`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The known name nearest to `word`, if it is close enough to be a likely typo: at most a third of
/// the word's length in edits (and at least one), or a difference of case alone.
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// "unknown field" with the nearest known name, or the known names when none is near.
pub fn unknown_field(field: &str, known: &[&str]) -> String {
    match nearest(field, known.iter().copied()) {
        Some(k) => format!("unknown field, did you mean {k}?"),
        None if known.is_empty() => "unknown field (nothing may be given here)".into(),
        None => format!("unknown field (known fields: {})", known.join(", ")),
    }
}

/// The first field of `value` (in document order for objects read from text) that `schema` (a
/// JSON Schema as `schemars` writes it) does not know: its path below `value` and the cause.
/// Free-form parts (`x-kubernetes-preserve-unknown-fields`) are not looked into.
pub fn check_schema(value: &Value, schema: &Value) -> Result<(), (String, String)> {
    walk(value, schema, schema, "")
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(root, |v, seg| &v[seg]))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The schema and the alternatives it allows (`anyOf`, `oneOf`, `allOf`), refs resolved.
fn branches<'a>(root: &'a Value, schema: &'a Value, out: &mut Vec<&'a Value>) {
    let schema = resolve(root, schema);
    out.push(schema);
    for key in ["anyOf", "oneOf", "allOf"] {
        for b in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            branches(root, b, out);
        }
    }
}

fn walk(value: &Value, schema: &Value, root: &Value, path: &str) -> Result<(), (String, String)> {
    let mut all = Vec::new();
    branches(root, schema, &mut all);
    if all
        .iter()
        .any(|s| s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)))
    {
        return Ok(());
    }
    match value {
        Value::Object(map) => {
            let props: Vec<(&str, &Value)> = all
                .iter()
                .filter_map(|s| s.get("properties").and_then(Value::as_object))
                .flat_map(|p| p.iter().map(|(k, v)| (k.as_str(), v)))
                .collect();
            let extra = all
                .iter()
                .find_map(|s| s.get("additionalProperties").filter(|a| a.is_object()));
            if props.is_empty() && extra.is_none() {
                return Ok(());
            }
            for (key, v) in map {
                let here = join(path, key);
                if let Some((_, s)) = props.iter().find(|(k, _)| k == key) {
                    walk(v, s, root, &here)?;
                } else if let Some(s) = extra {
                    walk(v, s, root, &here)?;
                } else {
                    let known: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
                    return Err((here, unknown_field(key, &known)));
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            let Some(item_schema) = all.iter().find_map(|s| s.get("items")) else {
                return Ok(());
            };
            for (i, v) in items.iter().enumerate() {
                walk(v, item_schema, root, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The fields Kubernetes puts in an object's `metadata`: a Canary copied from the cluster
/// (`kubectl get canary -o yaml`) carries them, and they do not affect a replay.
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "generateName",
    "selfLink",
];

/// The fields of a Canary object besides `spec` and `metadata`; `status` is the cluster's and is
/// not read (a trace's `initial.status` sets the status a replay starts from).
pub const CANARY_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Checks a Canary object for fields Flagger does not know: `spec` against the CRD's schema,
/// `metadata` against Kubernetes' object metadata. Returns the path and the cause.
pub fn check_canary_fields(value: &Value) -> Result<(), (String, String)> {
    let Some(map) = value.as_object() else {
        return Ok(());
    };
    for key in map.keys() {
        if !CANARY_FIELDS.contains(&key.as_str()) {
            return Err((key.clone(), unknown_field(key, CANARY_FIELDS)));
        }
    }
    if let Some(meta) = map.get("metadata").and_then(Value::as_object) {
        for key in meta.keys() {
            if !OBJECT_META_FIELDS.contains(&key.as_str()) {
                return Err((
                    format!("metadata.{key}"),
                    unknown_field(key, OBJECT_META_FIELDS),
                ));
            }
        }
    }
    if let Some(spec) = map.get("spec") {
        let schema = schemars::schema_for!(flagger_core::api::CanarySpec);
        check_schema(spec, schema.as_value()).map_err(|(p, m)| (format!("spec.{p}"), m))?;
    }
    Ok(())
}

/// Checks a Canary status (a trace's `initial.status`) for fields Flagger does not know.
pub fn check_status_fields(value: &Value) -> Result<(), (String, String)> {
    let schema = schemars::schema_for!(flagger_core::CanaryStatus);
    check_schema(value, schema.as_value())
}

/// The 1-based line where the field at `path` (`a.b[2].c`) is written in `text`, found by looking
/// for each key in turn after the previous one (`"key":` in JSON, `key:` in YAML). `None` when a
/// key cannot be found, so a guess is never printed as a fact.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    let mut pos = 0;
    let mut line_at = 0;
    let mut found = false;
    // Inside the n-th item of a list, the key wanted is the (n+1)-th occurrence after the list's
    // own key (true when every item writes the key; an unknown field is looked up without indices).
    let mut skip = 0;
    for seg in path.split('.') {
        let (key, index) = match seg.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().unwrap_or(0)),
            None => (seg, 0),
        };
        if key.is_empty() {
            skip = index;
            continue;
        }
        let json = format!("\"{key}\"");
        for _ in 0..=skip {
            let rest = &text[pos..];
            let at = find_key(rest, &json).or_else(|| find_yaml_key(rest, key))?;
            line_at = pos + at;
            pos = line_at + key.len();
        }
        skip = index;
        found = true;
    }
    found.then(|| text[..line_at].matches('\n').count() + 1)
}

fn find_key(text: &str, quoted: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(quoted) {
        let at = from + i;
        let after = text[at + quoted.len()..].trim_start();
        if after.starts_with(':') {
            return Some(at);
        }
        from = at + quoted.len();
    }
    None
}

fn find_yaml_key(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_start().trim_start_matches("- ").trim_start();
        let unquoted = body
            .strip_prefix(key)
            .or_else(|| body.strip_prefix(&format!("\"{key}\"")))
            .or_else(|| body.strip_prefix(&format!("'{key}'")));
        if let Some(rest) = unquoted
            && rest.trim_start().starts_with(':')
        {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// Rewrites a deserializer's message (serde's wording) into ours. Messages we wrote ourselves
/// (durations, times, percentages) pass through unchanged.
pub fn plain(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            expected_words(expected),
            found_words(found)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "{} is not valid here, expected {}",
            found_words(found),
            expected_words(expected)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((n, expected)) = rest.split_once(", expected ")
    {
        return format!("{n} items, expected {}", expected_words(expected));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (word, known) = ticked_list(rest);
        return format!(
            "{word:?} is not one of {}",
            if known.is_empty() {
                "the allowed values".to_string()
            } else {
                known.join(", ")
            }
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (word, known) = ticked_list(rest);
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        return format!("{word}: {}", unknown_field(&word, &known));
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        return format!("{}: missing (required)", rest.trim_matches('`'));
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        return format!("{}: given twice", rest.trim_matches('`'));
    }
    if message.starts_with("data did not match any variant") {
        return "not one of the accepted shapes".into();
    }
    message.to_string()
}

/// `` `word`, expected one of `a`, `b` `` → (`word`, [`a`, `b`]).
fn ticked_list(text: &str) -> (String, Vec<String>) {
    let mut parts = text.split('`');
    let _ = parts.next();
    let word = parts.next().unwrap_or_default().to_string();
    let known = parts
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    (word, known)
}

fn found_words(found: &str) -> String {
    let ticked = |p: &str| {
        found
            .strip_prefix(p)
            .map(|r| r.trim().trim_matches('`').to_string())
    };
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    for p in ["integer ", "floating point ", "boolean "] {
        if let Some(v) = ticked(p) {
            return v;
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "unit value" | "null" | "Option value" => "null".into(),
        other => other.into(),
    }
}

fn expected_words(expected: &str) -> String {
    let e = expected.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => return "a whole number of at least 0".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => return "a whole number".into(),
        "f32" | "f64" => return "a number".into(),
        "a boolean" | "bool" => return "true or false".into(),
        "a sequence" => return "a list".into(),
        "a map" | "map" => return "an object".into(),
        _ => {}
    }
    if e.starts_with("struct ")
        || e.starts_with("internally tagged enum")
        || e.starts_with("adjacently tagged enum")
    {
        return "an object".into();
    }
    if e.starts_with("enum ") || e.starts_with("variant identifier") {
        return "one of the allowed values".into();
    }
    if e.starts_with("a sequence") || e.starts_with("tuple") {
        return "a list".into();
    }
    e.to_string()
}

/// A JSON syntax error (serde_json's classification and message) in our words.
pub fn json_syntax(message: &str) -> String {
    let m = message.trim();
    let known: &[(&str, &str)] = &[
        (
            "EOF while parsing a list",
            "the file ends inside a list (missing ])",
        ),
        (
            "EOF while parsing an object",
            "the file ends inside an object (missing })",
        ),
        (
            "EOF while parsing a string",
            "the file ends inside a string (missing \")",
        ),
        (
            "EOF while parsing a value",
            "the file ends where a value should be",
        ),
        ("expected `:`", "expected : after the key"),
        ("expected `,` or `]`", "expected , or ] in the list"),
        ("expected `,` or `}`", "expected , or } in the object"),
        ("expected ident", "expected true, false or null"),
        (
            "expected value",
            "expected a value (an object, list, string, number, true, false or null)",
        ),
        ("expected `\"`", "expected a quoted key"),
        (
            "key must be a string",
            "an object's key must be a quoted string",
        ),
        ("trailing comma", "a comma before the closing bracket"),
        (
            "trailing characters",
            "more text after the end of the JSON document",
        ),
        ("invalid number", "not a valid number"),
        ("number out of range", "a number out of range"),
        ("invalid escape", "an invalid escape in a string"),
        (
            "invalid unicode code point",
            "an invalid \\u escape in a string",
        ),
        (
            "control character",
            "a raw control character in a string (write it escaped)",
        ),
        (
            "lone leading surrogate",
            "an invalid \\u escape in a string",
        ),
        (
            "unexpected end of hex escape",
            "an invalid \\u escape in a string",
        ),
        ("recursion limit exceeded", "nested too deeply"),
        ("EOF while parsing", "the file ends early"),
    ];
    known.iter().find(|(k, _)| m.starts_with(k)).map_or_else(
        || "not valid JSON".to_string(),
        |(_, ours)| (*ours).to_string(),
    )
}

/// A YAML syntax error in our words: the first line of the parser's message, with its own
/// position and prefixes removed (the caller prints the line).
pub fn yaml_syntax(message: &str) -> String {
    let first = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("not valid YAML");
    let mut first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // "line 3 column 5: ..." as the parser writes it.
    if first.starts_with("line ")
        && let Some(i) = first.find(": ")
    {
        first = first[i + 2..].to_string();
    }
    let first = first
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    if first.is_empty() {
        "not valid YAML".into()
    } else {
        format!("not valid YAML: {first}")
    }
}

/// Parses YAML text into its documents (empty ones dropped), naming the line of a syntax error.
pub fn yaml_documents(file: &str, text: &str) -> Result<Vec<Value>, InputError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        let cause = yaml_syntax(&e.to_string());
        match e.location() {
            Some(l) => InputError::at(file, l.line() as usize, cause),
            None => InputError::new(file, cause),
        }
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Deserializes `T` from an already parsed document, naming the field path and (found in `text`)
/// its line.
pub fn from_value<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
    prefix: &str,
    value: Value,
) -> Result<T, InputError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let cause = plain(&e.into_inner().to_string());
        located(file, text, &format!("{prefix}{path}"), &cause)
    })
}

/// Joins a field name that [`plain`] put at the front of a cause (`word: unknown field…`,
/// `word: missing (required)`) to the path: returns the full path and the cause alone.
pub fn describe(path: &str, cause: &str) -> (String, String) {
    for marker in [": unknown field", ": missing (required)", ": given twice"] {
        if let Some((word, rest)) = cause.split_once(marker)
            && !word.is_empty()
            && !word.contains(' ')
        {
            // Some deserializers already end the path with the field itself.
            let full = if path.is_empty() || path == word {
                word.to_string()
            } else if path.ends_with(&format!(".{word}")) {
                path.to_string()
            } else {
                format!("{path}.{word}")
            };
            return (full, format!("{}{rest}", &marker[2..]));
        }
    }
    (path.to_string(), cause.to_string())
}

/// `FILE:LINE: path: cause`, with the line when it can be found in `text`.
pub fn located(file: &str, text: &str, path: &str, cause: &str) -> InputError {
    let (path, cause) = describe(path, cause);
    let what = if path.is_empty() {
        cause
    } else {
        format!("{path}: {cause}")
    };
    match line_of(text, &path) {
        Some(line) if !path.is_empty() => InputError::at(file, line, what),
        _ => InputError::new(file, what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transposition_is_one_edit_and_suggests_the_field() {
        assert_eq!(distance("stepWeigth", "stepWeight"), 1);
        assert_eq!(
            nearest("stepWeigth", ["stepWeight", "stepWeights", "maxWeight"]),
            Some("stepWeight")
        );
        assert_eq!(nearest("banana", ["stepWeight", "interval"]), None);
        assert_eq!(nearest("Interval", ["interval"]), Some("interval"));
    }

    #[test]
    fn the_canary_schema_knows_every_spec_field_and_nothing_else() {
        let ok = json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"targetRef": {"name": "p"}, "service": {"port": 1, "match": [{"any": 1}],
                "trafficPolicy": {"tls": {"mode": "X"}}},
                "analysis": {"stepWeight": 5, "metrics": [{"name": "m", "templateVariables": {"x": "y"}}]}}});
        assert_eq!(check_canary_fields(&ok), Ok(()));
        let mut bad = ok.clone();
        bad["spec"]["analysis"]["stepWeigth"] = json!(5);
        assert_eq!(
            check_canary_fields(&bad),
            Err((
                "spec.analysis.stepWeigth".into(),
                "unknown field, did you mean stepWeight?".into()
            ))
        );
        let mut bad = ok.clone();
        bad["spec"]["analysis"]["metrics"][0]["tresholdRange"] = json!({});
        assert_eq!(
            check_canary_fields(&bad).unwrap_err().0,
            "spec.analysis.metrics[0].tresholdRange"
        );
        let mut bad = ok.clone();
        bad["metadata"]["nmae"] = json!("x");
        assert_eq!(
            check_canary_fields(&bad),
            Err((
                "metadata.nmae".into(),
                "unknown field, did you mean name?".into()
            ))
        );
        let mut bad = ok;
        bad["sepc"] = json!({});
        assert_eq!(check_canary_fields(&bad).unwrap_err().0, "sepc");
    }

    #[test]
    fn status_fields_are_checked() {
        assert_eq!(
            check_status_fields(&json!({"phase": "Progressing", "canaryWeight": 10})),
            Ok(())
        );
        assert_eq!(
            check_status_fields(&json!({"canaryWieght": 10})),
            Err((
                "canaryWieght".into(),
                "unknown field, did you mean canaryWeight?".into()
            ))
        );
    }

    #[test]
    fn serde_wording_is_rewritten() {
        assert_eq!(
            plain("invalid type: string \"x\", expected f64"),
            "expected a number, found the string \"x\""
        );
        assert_eq!(
            plain("invalid value: integer `-1`, expected u32"),
            "-1 is not valid here, expected a whole number of at least 0"
        );
        assert_eq!(
            plain("unknown field `durtion`, expected one of `version`, `duration`, `end`"),
            "durtion: unknown field, did you mean duration?"
        );
        assert_eq!(
            plain("unknown variant `canry`, expected `canary` or `primary`"),
            "\"canry\" is not one of canary, primary"
        );
        assert_eq!(plain("missing field `at`"), "at: missing (required)");
        assert_eq!(
            plain("invalid type: map, expected a string"),
            "expected a string, found an object"
        );
    }

    #[test]
    fn a_field_named_in_the_cause_joins_the_path_once() {
        let (path, cause) = describe("a[0]", "valeu: unknown field, did you mean value?");
        assert_eq!(path, "a[0].valeu");
        assert_eq!(cause, "unknown field, did you mean value?");
        let (path, _) = describe("a[0].valeu", "valeu: unknown field, did you mean value?");
        assert_eq!(path, "a[0].valeu");
        let (path, cause) = describe("", "at: missing (required)");
        assert_eq!(
            (path.as_str(), cause.as_str()),
            ("at", "missing (required)")
        );
    }

    #[test]
    fn lines_are_found_by_key_path() {
        let json = "{\n  \"a\": {\n    \"b\": 1,\n    \"c\": {\"d\": 2}\n  }\n}";
        assert_eq!(line_of(json, "a.c.d"), Some(4));
        assert_eq!(line_of(json, "a.b"), Some(3));
        assert_eq!(line_of(json, "a.x"), None);
        let yaml = "spec:\n  analysis:\n    metrics:\n      - name: x\n        tresholdRange: {}\n";
        assert_eq!(
            line_of(yaml, "spec.analysis.metrics[0].tresholdRange"),
            Some(5)
        );
        assert_eq!(line_of(yaml, "spec.analysis.metrics[0].name"), Some(4));
        let list = "{\"answers\": [\n{\"key\": \"a\"},\n{\"key\": \"b\"}\n]}";
        assert_eq!(line_of(list, "answers[1].key"), Some(3));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("flagger-strict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo.json");
        let _ = std::fs::remove_file(&fifo);
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !status.is_ok_and(|s| s.success()) {
            panic!("mkfifo is needed for this test");
        }
        let err = read_source(&fifo).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
        assert!(err.starts_with(&fifo.display().to_string()), "{err}");
        let err = read_source(&dir).unwrap_err().to_string();
        assert!(err.ends_with("is a directory, not a file"), "{err}");
        let err = read_source(&dir.join("absent.json"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("cannot read: no such file"), "{err}");
    }
}
