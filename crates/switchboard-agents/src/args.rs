//! Schema-driven tool arguments, shared by the SQL, HTTP and MCP tool kinds.
//!
//! A tool describes its arguments with a JSON Schema object. [`fill`] reads them from a
//! natural-language question where the schema makes that possible — numbers (`2 and 40`, `$120k`,
//! `1,500`, `25%`), quoted strings, enum values the question names, obvious booleans, email
//! addresses, dates, ids matching a `pattern` (`TCK-1003`), and, for a tool with one required
//! free-text property, the question minus the words naming the tool. [`ArgsValidator`] checks
//! arguments from any source (a model, a caller, [`fill`]) against the schema before a call, with
//! messages that name the argument.
//!
//! Properties are matched in the order of the schema's `required` list, then the remaining
//! properties by name: a parsed JSON object does not keep its key order.

use serde_json::{Map, Value, json};
use switchboard_core::{Error, Result};

/// Reads the arguments the question gives, fills the rest from `default`, and fails with
/// [`Error::invalid`] naming every required property still missing and its type, e.g.
/// "the `get-sum` tool needs `b` (a number): none found in the question".
///
/// The result is not validated: pass it through [`ArgsValidator::validate`] before a call, so a
/// value the question gave but the schema refuses (`150%` for a percentage) is reported as such.
pub fn fill(tool_name: &str, schema: &Value, question: &str) -> Result<Map<String, Value>> {
    let mut args = extract(tool_name, schema, question);
    complete(tool_name, schema, &mut args)?;
    Ok(args)
}

/// Fills properties `args` lacks from their `default`, then fails with [`Error::invalid`] naming
/// every required property still missing and its type. For arguments from several sources (a
/// model's tool call, then [`extract`] for what it left out) before validating them.
pub fn complete(tool_name: &str, schema: &Value, args: &mut Map<String, Value>) -> Result<()> {
    let mut missing = Vec::new();
    for p in &properties(schema) {
        if args.contains_key(p.name) {
            continue;
        }
        if let Some(default) = p.raw.get("default").or_else(|| p.schema.get("default")) {
            args.insert(p.name.to_string(), default.clone());
        } else if p.required {
            missing.push(format!("`{}` ({})", p.name, describe(p.schema)));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "the `{tool_name}` tool needs {}: none found in the question",
            join_and(&missing)
        )))
    }
}

/// The arguments the question gives, without defaults and without checking that required ones
/// are present. [`fill`] is this plus defaults and the required check; a kind that asks the caller
/// for missing values (the SQL tool) uses this directly.
pub fn extract(tool_name: &str, schema: &Value, question: &str) -> Map<String, Value> {
    let props = properties(schema);
    let mut args = Map::new();
    let (mut quotes, outside) = quoted(question);

    // `const` needs no evidence.
    for p in &props {
        if let Some(c) = p.schema.get("const") {
            args.insert(p.name.to_string(), c.clone());
        }
    }

    // Tokens that are ids, emails or dates are taken out first, so their digits are not read as
    // numbers (`TCK-1003`, `2025-01-31`).
    let mut tokens: Vec<(String, bool)> = outside
        .split_whitespace()
        .map(|w| (w.trim_matches(|c: char| TRIM.contains(c)).to_string(), false))
        .filter(|(w, _)| !w.is_empty())
        .collect();
    let mut quote_used = vec![false; quotes.len()];
    for p in &props {
        if args.contains_key(p.name) {
            continue;
        }
        let Kind::Pattern(pattern) = &p.kind else { continue };
        let Some(matcher) = pattern_matcher(pattern) else { continue };
        let matches = |s: &str| matcher.is_valid(&Value::String(s.to_string()));
        if let Some(i) = (0..quotes.len()).find(|&i| !quote_used[i] && matches(&quotes[i])) {
            quote_used[i] = true;
            args.insert(p.name.to_string(), Value::String(quotes[i].clone()));
        } else if let Some(t) = tokens.iter_mut().find(|(t, used)| !used && id_like(t) && matches(t)) {
            t.1 = true;
            args.insert(p.name.to_string(), Value::String(t.0.clone()));
        }
    }
    let mut emails = Vec::new();
    let mut dates = Vec::new();
    for (t, used) in tokens.iter_mut().filter(|(_, used)| !*used) {
        if is_email(t) {
            emails.push(t.to_ascii_lowercase());
            *used = true;
        } else if is_date(t) {
            dates.push(t.clone());
            *used = true;
        }
    }
    let mut emails = emails.into_iter();
    let mut dates = dates.into_iter();
    for p in &props {
        if args.contains_key(p.name) {
            continue;
        }
        let value = match p.kind {
            Kind::Email => emails.next(),
            Kind::Date => dates.next(),
            _ => continue,
        };
        if let Some(v) = value {
            args.insert(p.name.to_string(), Value::String(v));
        }
    }
    let rest: String =
        tokens.iter().filter(|(_, used)| !used).map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(" ");

    fill_numbers(&props, &rest, &mut args);

    let words = crate::genie::semantic::words(&rest);
    for p in &props {
        if args.contains_key(p.name) {
            continue;
        }
        let value = match &p.kind {
            Kind::Choice(choices) => mentioned_choice(&words, choices).cloned(),
            Kind::Bool => boolean(p.name, &outside),
            _ => None,
        };
        if let Some(v) = value {
            args.insert(p.name.to_string(), v);
        }
    }

    // Quoted strings, in order, go to free-text properties, in order.
    let mut free_quotes = quotes.drain(..).zip(quote_used).filter(|(_, used)| !used).map(|(q, _)| q);
    for p in &props {
        if !matches!(p.kind, Kind::Text) || args.contains_key(p.name) {
            continue;
        }
        match free_quotes.next() {
            Some(q) => {
                args.insert(p.name.to_string(), Value::String(q));
            }
            None => break,
        }
    }

    // One required free-text property (an `echo` tool's `message`, an `open_ticket` tool's
    // `title` beside an optional `description`): the question is its value, less the words
    // asking for the tool — or, in "open a ticket: the printer is jammed", what follows the colon.
    // Optional free text is never guessed, and neither is the text of a question asking for
    // information ("what are my open tickets?"), which is not a value to send.
    let mut text_props = props.iter().filter(|p| matches!(p.kind, Kind::Text) && p.required);
    if let (Some(p), None) = (text_props.next(), text_props.next())
        && !args.contains_key(p.name)
        && let Some(text) = after_colon(question).or_else(|| {
            (!asks_for_information(question)).then(|| free_text(tool_name, p.name, question)).flatten()
        })
    {
        args.insert(p.name.to_string(), Value::String(text));
    }
    args
}

/// Checks arguments against `schema`, compiling it for this one call. Callers that validate
/// repeatedly keep an [`ArgsValidator`] instead.
pub fn validate(tool_name: &str, schema: &Value, args: &Map<String, Value>) -> Result<()> {
    ArgsValidator::new(tool_name, schema)?.validate(args)
}

/// A tool's argument schema, compiled once and used for every call.
///
/// Remote `$ref`s are never fetched: the `jsonschema` crate is built without its HTTP and file
/// resolvers, so a schema that points outside itself fails to compile instead.
pub struct ArgsValidator {
    tool: String,
    schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArgsValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgsValidator").field("tool", &self.tool).finish_non_exhaustive()
    }
}

impl ArgsValidator {
    /// Compiles `schema`. Fails with [`Error::config`] when it is not a valid JSON Schema (checked
    /// against its draft's meta-schema) or is not an object schema.
    pub fn new(tool_name: &str, schema: &Value) -> Result<Self> {
        let invalid = |detail: String| {
            Error::config(format!("the `{tool_name}` tool's argument schema is invalid: {detail}"))
        };
        if !schema.is_object() {
            return Err(invalid("it must be a JSON object".into()));
        }
        if schema.get("type").is_some_and(|t| t != "object") {
            return Err(invalid(format!("its type must be \"object\", not {}", schema["type"])));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { tool: tool_name.to_string(), schema: schema.clone(), validator })
    }

    /// The tool the schema belongs to.
    pub fn tool_name(&self) -> &str {
        &self.tool
    }

    /// The schema, as given.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// Checks `args`; the [`Error::invalid`] names each offending argument and what is wrong,
    /// e.g. "`b` must be a number, got \"forty\"".
    pub fn validate(&self, args: &Map<String, Value>) -> Result<()> {
        let instance = Value::Object(args.clone());
        let mut problems: Vec<String> = Vec::new();
        for error in self.validator.iter_errors(&instance) {
            let problem = self.explain(&error);
            if !problems.contains(&problem) {
                problems.push(problem);
            }
            if problems.len() == 3 {
                break;
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::invalid(problems.join("; "))) }
    }

    fn explain(&self, error: &jsonschema::ValidationError<'_>) -> String {
        use jsonschema::error::{TypeKind, ValidationErrorKind as K};
        let path: Vec<String> = error.instance_path().iter().map(|s| s.to_string()).collect();
        let arg = if path.is_empty() { None } else { Some(format!("`{}`", path.join("."))) };
        let got = shown(error.instance());
        let subject = arg.clone().unwrap_or_else(|| "the arguments".to_string());
        match error.kind() {
            K::Required { property } => {
                let name = property.as_str().map_or_else(|| property.to_string(), str::to_string);
                let what = sub_schema(&self.schema, &path)
                    .and_then(|s| s.get("properties"))
                    .and_then(|p| p.get(&name))
                    .map(describe)
                    .unwrap_or_else(|| "a value".into());
                match arg {
                    None => format!("the `{}` tool needs `{name}` ({what})", self.tool),
                    Some(a) => format!("{a} needs `{name}` ({what})"),
                }
            }
            K::Type { kind } => {
                let mut expected: Vec<String> = match kind {
                    TypeKind::Single(t) => vec![type_phrase(&t.to_string())],
                    TypeKind::Multiple(set) => set.iter().map(|t| type_phrase(&t.to_string())).collect(),
                };
                // "a whole number or null" reads better than the set's own order.
                expected.sort_by_key(|t| t == "null");
                format!("{subject} must be {}, got {got}", join_or(&expected))
            }
            K::Enum { options } => {
                let list: Vec<String> =
                    options.as_array().map_or_else(Vec::new, |a| a.iter().map(plain).collect());
                format!("{subject} must be one of {}, got {got}", list.join(", "))
            }
            K::Constant { expected_value } => {
                format!("{subject} must be {}, got {got}", plain(expected_value))
            }
            K::Minimum { limit } => format!("{subject} must be at least {limit}, got {got}"),
            K::Maximum { limit } => format!("{subject} must be at most {limit}, got {got}"),
            K::ExclusiveMinimum { limit } => format!("{subject} must be greater than {limit}, got {got}"),
            K::ExclusiveMaximum { limit } => format!("{subject} must be less than {limit}, got {got}"),
            K::MinLength { limit } => {
                format!("{subject} must be at least {limit} characters long, got {got}")
            }
            K::MaxLength { limit } => format!("{subject} must be at most {limit} characters long, got {got}"),
            K::Pattern { pattern } => format!("{subject} must match `{pattern}`, got {got}"),
            K::Format { format } => format!("{subject} must be a valid {format}, got {got}"),
            K::AdditionalProperties { unexpected } => {
                let names: Vec<String> = unexpected.iter().map(|u| format!("`{u}`")).collect();
                let known: Vec<&str> = sub_schema(&self.schema, &path)
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map_or_else(Vec::new, |p| p.keys().map(String::as_str).collect());
                let owner = match &arg {
                    None => format!("the `{}` tool", self.tool),
                    Some(a) => a.clone(),
                };
                let takes = if known.is_empty() {
                    "no arguments".to_string()
                } else {
                    format!("only {}", known.join(", "))
                };
                format!("{owner} takes {takes}; unexpected {}", join_and(&names))
            }
            _ => format!("{subject}: {error}"),
        }
    }
}

/// How a property is read from a question.
enum Kind<'a> {
    Number {
        integer: bool,
        percent: bool,
    },
    Choice(Vec<Value>),
    Email,
    Date,
    Pattern(&'a str),
    Bool,
    /// A string with no enum, pattern or format: free text.
    Text,
    /// Arrays, objects and anything else a question cannot give.
    Other,
}

struct Prop<'a> {
    name: &'a str,
    /// The property's schema as declared.
    raw: &'a Value,
    /// The property's effective schema (the non-null branch of an optional `anyOf`).
    schema: &'a Value,
    required: bool,
    kind: Kind<'a>,
}

/// The schema's properties: required ones in `required` order first, then the rest.
fn properties(schema: &Value) -> Vec<Prop<'_>> {
    let Some(all) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |r| r.iter().filter_map(Value::as_str).collect());
    let mut names: Vec<&str> = required.iter().copied().filter(|n| all.contains_key(*n)).collect();
    names.dedup();
    names.extend(all.keys().map(String::as_str).filter(|k| !required.contains(k)));
    names
        .into_iter()
        .filter_map(|name| {
            let raw = all.get(name)?;
            let schema = effective(raw);
            Some(Prop { name, raw, schema, required: required.contains(&name), kind: kind_of(name, schema) })
        })
        .collect()
}

/// An optional property generated as `anyOf: [{…}, {"type": "null"}]` is read as its non-null
/// branch.
fn effective(schema: &Value) -> &Value {
    if schema.get("type").is_none() && schema.get("enum").is_none() {
        for key in ["anyOf", "oneOf"] {
            if let Some(branch) = schema
                .get(key)
                .and_then(Value::as_array)
                .and_then(|b| b.iter().find(|s| s.get("type").is_some_and(|t| t != "null")))
            {
                return branch;
            }
        }
    }
    schema
}

/// The main JSON type of a schema (the first that is not `null`).
fn main_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn kind_of<'a>(name: &str, schema: &'a Value) -> Kind<'a> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return Kind::Choice(options.iter().filter(|o| o.is_string()).cloned().collect());
    }
    let description = schema.get("description").and_then(Value::as_str).unwrap_or("").to_lowercase();
    match main_type(schema) {
        Some("number" | "integer") => {
            let words = name_words(name);
            let percent = words.iter().any(|w| matches!(w.as_str(), "pct" | "percent" | "percentage"))
                || description.contains("percent");
            Kind::Number { integer: main_type(schema) == Some("integer"), percent }
        }
        Some("boolean") => Kind::Bool,
        Some("string") => {
            let format = schema.get("format").and_then(Value::as_str);
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                Kind::Pattern(p)
            } else if format == Some("email")
                || (format.is_none() && name_words(name).iter().any(|w| w == "email"))
            {
                Kind::Email
            } else if format == Some("date") {
                Kind::Date
            } else if format.is_some() {
                Kind::Other
            } else {
                Kind::Text
            }
        }
        _ => Kind::Other,
    }
}

/// What a property takes, for messages: "a number", "one of open, closed", "an email address".
fn describe(schema: &Value) -> String {
    let schema = effective(schema);
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        let list: Vec<String> = options.iter().map(plain).collect();
        return format!("one of {}", list.join(", "));
    }
    match (main_type(schema), schema.get("format").and_then(Value::as_str)) {
        (Some("string"), Some("email")) => "an email address".into(),
        (Some("string"), Some("date")) => "a date, YYYY-MM-DD".into(),
        (Some("string"), _) => match schema.get("pattern").and_then(Value::as_str) {
            Some(p) => format!("text matching `{p}`"),
            None => "text".into(),
        },
        (Some(t), _) => type_phrase(t),
        (None, _) => "a value".into(),
    }
}

fn type_phrase(json_type: &str) -> String {
    match json_type {
        "number" => "a number",
        "integer" => "a whole number",
        "string" => "a string",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "an object",
        "null" => "null",
        _ => "a value",
    }
    .to_string()
}

/// A value as a message shows it: JSON, cut at 80 characters so a huge argument stays short.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A schema value in prose: strings without quotes.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn join_with(items: &[String], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

fn join_and(items: &[String]) -> String {
    join_with(items, "and")
}

fn join_or(items: &[String]) -> String {
    join_with(items, "or")
}

/// The sub-schema at an instance path, following `properties` (and `items` for indexes).
fn sub_schema<'a>(schema: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut s = effective(schema);
    for seg in path {
        s = effective(match s.get("properties").and_then(|p| p.get(seg)) {
            Some(next) => next,
            None => s.get("items")?,
        });
    }
    Some(s)
}

const TRIM: &str = ",.;:?!()<>\"'[]{}";

/// Quoted passages ("…", “…”, '…' at word boundaries) and the question with them blanked.
fn quoted(question: &str) -> (Vec<String>, String) {
    let chars: Vec<char> = question.chars().collect();
    let mut quotes = Vec::new();
    let mut outside = String::new();
    let mut i = 0;
    while i < chars.len() {
        let close = match chars[i] {
            '"' => Some('"'),
            '\u{201c}' => Some('\u{201d}'),
            // An apostrophe inside a word ("what's") opens nothing.
            '\'' if i == 0 || !chars[i - 1].is_alphanumeric() => Some('\''),
            _ => None,
        };
        let end = close.and_then(|c| {
            (i + 1..chars.len()).find(|&j| {
                chars[j] == c && (c != '\'' || chars.get(j + 1).is_none_or(|n| !n.is_alphanumeric()))
            })
        });
        match end {
            Some(j) if j > i + 1 => {
                quotes.push(chars[i + 1..j].iter().collect());
                outside.push(' ');
                i = j + 1;
            }
            _ => {
                outside.push(chars[i]);
                i += 1;
            }
        }
    }
    (quotes, outside)
}

/// A validator for one `pattern`, with the JSON Schema (ECMA 262) regex dialect.
fn pattern_matcher(pattern: &str) -> Option<jsonschema::Validator> {
    jsonschema::validator_for(&json!({"type": "string", "pattern": pattern})).ok()
}

/// Plain lowercase words match almost any loose pattern, so only id-looking tokens (with a digit,
/// a capital or a separator) are offered to one; quoted text is offered as is.
fn id_like(token: &str) -> bool {
    token.chars().any(|c| c.is_ascii_digit() || c.is_uppercase() || "-_/.#:".contains(c))
}

/// Numbers in order of appearance go to numeric properties in order, each taking the first number
/// it accepts (whole for integers, within minimum/maximum). Percentages go to percentage
/// properties when the schema has any. A required property no number fits still takes the next
/// one, so validation can say what is wrong with it rather than that nothing was found.
fn fill_numbers(props: &[Prop<'_>], text: &str, args: &mut Map<String, Value>) {
    let numbers = scan_numbers(text);
    let mut used = vec![false; numbers.len()];
    let has_percent = props.iter().any(|p| matches!(p.kind, Kind::Number { percent: true, .. }));
    let pool = |percent: bool, i: usize| !has_percent || numbers[i].percent == percent;
    let numeric: Vec<(&Prop<'_>, bool, bool)> = props
        .iter()
        .filter(|p| !args.contains_key(p.name))
        .filter_map(|p| match p.kind {
            Kind::Number { integer, percent } => Some((p, integer, percent)),
            _ => None,
        })
        .collect();
    let mut unfilled = Vec::new();
    for &(p, integer, percent) in &numeric {
        let fits = |n: f64| (!integer || n.fract() == 0.0) && within(p.schema, n);
        match (0..numbers.len()).find(|&i| !used[i] && pool(percent, i) && fits(numbers[i].value)) {
            Some(i) => {
                used[i] = true;
                args.insert(p.name.to_string(), number_json(numbers[i].value));
            }
            None if p.required => unfilled.push((p, percent)),
            None => {}
        }
    }
    for (p, percent) in unfilled {
        if let Some(i) = (0..numbers.len()).find(|&i| !used[i] && pool(percent, i)) {
            used[i] = true;
            args.insert(p.name.to_string(), number_json(numbers[i].value));
        }
    }
}

fn within(schema: &Value, n: f64) -> bool {
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    bound("minimum").is_none_or(|m| n >= m)
        && bound("maximum").is_none_or(|m| n <= m)
        && bound("exclusiveMinimum").is_none_or(|m| n > m)
        && bound("exclusiveMaximum").is_none_or(|m| n < m)
}

/// The first choice (in schema order) the question names, as a phrase (`access denied` for
/// `access_denied`) or by its last word (`denied`).
fn mentioned_choice<'c>(words: &[String], choices: &'c [Value]) -> Option<&'c Value> {
    choices.iter().find(|c| {
        let Some(c) = c.as_str() else { return false };
        let phrase = crate::genie::semantic::words(&c.replace(['_', '-'], " "));
        let whole = words.windows(phrase.len().max(1)).any(|w| w == phrase);
        let last = phrase.last().is_some_and(|l| words.contains(l));
        whole || last
    })
}

/// Words of an identifier: `include_closed`, `includeClosed` and `include-closed` all give
/// `include`, `closed`.
fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

const NEGATIONS: &[&str] =
    &["no", "not", "without", "exclude", "excluding", "skip", "never", "dont", "don't", "except"];
const BOOL_PREFIXES: &[&str] =
    &["include", "is", "with", "show", "has", "should", "enable", "use", "only", "allow"];

/// A boolean the question makes obvious: `name=false` / `name: yes`, or the name's words
/// mentioned (`including closed` → `include_closed` true; `without closed` → false).
fn boolean(name: &str, text: &str) -> Option<Value> {
    let lower = text.to_lowercase();
    let name_lower = name.to_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&name_lower) {
        let after = lower[from + at + name_lower.len()..].trim_start();
        if let Some(v) = after.strip_prefix(['=', ':']) {
            let v = v.trim_start();
            for (word, value) in [("true", true), ("yes", true), ("false", false), ("no", false)] {
                if v.starts_with(word) && v[word.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric())
                {
                    return Some(Value::Bool(value));
                }
            }
        }
        from += at + name_lower.len();
    }
    let content: Vec<String> =
        name_words(name).into_iter().filter(|w| !BOOL_PREFIXES.contains(&w.as_str())).collect();
    if content.is_empty() {
        return None;
    }
    // A negation counts only within the clause: "notify: no, include comments".
    lower.split([',', ';', '.', '!', '?']).find_map(|clause| {
        let words: Vec<&str> =
            clause.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| !w.is_empty()).collect();
        let at = words.windows(content.len()).position(|w| w.iter().zip(&content).all(|(a, b)| a == b))?;
        let negated = words[at.saturating_sub(2)..at].iter().any(|w| NEGATIONS.contains(w));
        Some(Value::Bool(!negated))
    })
}

const FILLER: &[&str] = &[
    "please", "pls", "can", "could", "would", "you", "kindly", "use", "call", "run", "invoke", "the", "tool",
    "to", "just", "me", "for", "with", "using", "via", "that", "this", "and",
];

/// Whether `question` asks for information ("what are…", "how many…", "is there…") rather than
/// asking for something to be done ("echo hello", "can you open a ticket…").
fn asks_for_information(question: &str) -> bool {
    const ASKING: &[&str] = &[
        "what", "what's", "whats", "which", "who", "whose", "where", "when", "why", "how", "do", "does",
        "did", "is", "are", "am", "was", "were", "have", "has",
    ];
    question
        .split_whitespace()
        .next()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'').to_lowercase())
        .is_some_and(|w| ASKING.contains(&w.as_str()))
}

/// What follows the first `: ` of a request ("open a ticket: the printer is jammed"), if anything.
fn after_colon(question: &str) -> Option<String> {
    let (_, rest) = question.split_once(": ")?;
    let rest = rest.trim();
    (!rest.is_empty()).then(|| rest.to_string())
}

/// The question minus leading words that ask for the tool ("please use echo to …") and a trailing
/// "with echo"; `None` when nothing is left.
fn free_text(tool_name: &str, prop: &str, question: &str) -> Option<String> {
    let tool_words = name_words(tool_name);
    let prop_words = name_words(prop);
    let strip = |w: &str| {
        let w = w.trim_matches(|c: char| TRIM.contains(c)).to_lowercase();
        w.is_empty() || tool_words.contains(&w) || prop_words.contains(&w) || FILLER.contains(&w.as_str())
    };
    let mut words: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for w in question.split_whitespace() {
        let at = offset + question[offset..].find(w)?;
        words.push((at, w));
        offset = at + w.len();
    }
    let start = words.iter().position(|(_, w)| !strip(w))?;
    let mut end = words.len();
    // "… with echo", "… using the echo tool"
    let is_tool_word =
        |w: &str| tool_words.contains(&w.trim_matches(|c: char| TRIM.contains(c)).to_lowercase());
    if end - start > 1 && is_tool_word(words[end - 1].1) {
        let mut k = end - 1;
        while k > start && strip(words[k - 1].1) {
            k -= 1;
        }
        if k > start && k < end - 1 {
            end = k;
        }
    }
    let (first, _) = words[start];
    let (last, last_word) = words[end - 1];
    let text = question[first..last + last_word.len()].trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A number found in text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    /// The value, with `k`, `million`… applied.
    pub value: f64,
    /// Written as a percentage (`25%`, `25 percent`).
    pub percent: bool,
}

/// Numbers in `text`, in order: `40000`, `40,000`, `$40k`, `1.5m`, `2 million`, `25%`,
/// `25 percent`. Digits glued to letters (`q3`, `x2`) are not numbers.
pub(crate) fn scan_numbers(text: &str) -> Vec<Found> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    let word_at = |j: usize, w: &str| -> bool {
        let wc: Vec<char> = w.chars().collect();
        chars.len() >= j + wc.len()
            && chars[j..j + wc.len()] == wc[..]
            && chars.get(j + wc.len()).is_none_or(|c| !c.is_alphanumeric())
    };
    while i < chars.len() {
        let glued = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '.');
        if !chars[i].is_ascii_digit() || glued {
            i += 1;
            continue;
        }
        let mut digits = String::new();
        let mut j = i;
        while j < chars.len() {
            let c = chars[j];
            if c.is_ascii_digit() {
                digits.push(c);
                j += 1;
            } else if c == ','
                && chars.get(j + 1..j + 4).is_some_and(|d| d.iter().all(char::is_ascii_digit))
                && chars.get(j + 4).is_none_or(|d| !d.is_ascii_digit())
                && !digits.contains('.')
            {
                j += 1;
            } else if c == '.' && !digits.contains('.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
            {
                digits.push('.');
                j += 1;
            } else {
                break;
            }
        }
        let Ok(mut value) = digits.parse::<f64>() else {
            i = j.max(i + 1);
            continue;
        };
        let mut percent = false;
        let mut k = j;
        while k < chars.len() && chars[k] == ' ' {
            k += 1;
        }
        if chars.get(j) == Some(&'%') {
            percent = true;
            j += 1;
        } else if ["percent", "per cent", "pct"].iter().any(|w| word_at(k, w)) {
            percent = true;
            j = k + if word_at(k, "per cent") {
                8
            } else if word_at(k, "pct") {
                3
            } else {
                7
            };
        } else if word_at(j, "k") {
            value *= 1e3;
            j += 1;
        } else if word_at(j, "m") || word_at(j, "mm") || word_at(j, "mn") {
            value *= 1e6;
            j += if word_at(j, "m") { 1 } else { 2 };
        } else if word_at(j, "bn") {
            value *= 1e9;
            j += 2;
        } else if word_at(k, "thousand") {
            value *= 1e3;
            j = k + 8;
        } else if word_at(k, "million") {
            value *= 1e6;
            j = k + 7;
        } else if word_at(k, "billion") {
            value *= 1e9;
            j = k + 7;
        } else if chars.get(j).is_some_and(|c| c.is_alphabetic()) {
            // "3rd", "2x": not a quantity.
            while j < chars.len() && chars[j].is_alphanumeric() {
                j += 1;
            }
            i = j;
            continue;
        }
        found.push(Found { value, percent });
        i = j.max(i + 1);
    }
    found
}

/// A whole number as a JSON integer (so `40000` is not sent as `40000.0`), anything else as a float.
pub(crate) fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { json!(n as i64) } else { json!(n) }
}

/// Whether `s` looks like an email address.
pub(crate) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

/// `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::ErrorKind;

    fn echo() -> Value {
        json!({"type":"object","properties":{"message":{"type":"string","description":"Message to echo"}},"required":["message"]})
    }

    fn get_sum() -> Value {
        json!({"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]})
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn echo_takes_the_question_less_the_tool_name() {
        let fill = |q: &str| fill("echo", &echo(), q).map(Value::Object);
        assert_eq!(fill("echo hello world").unwrap(), json!({"message": "hello world"}));
        assert_eq!(fill("Please use echo to say Hi there!").unwrap(), json!({"message": "say Hi there!"}));
        assert_eq!(fill("repeat this back, with echo").unwrap(), json!({"message": "repeat this back,"}));
        assert_eq!(fill(r#"echo "exactly this""#).unwrap(), json!({"message": "exactly this"}));
        let err = fill("echo").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "the `echo` tool needs `message` (text): none found in the question");
    }

    #[test]
    fn the_one_required_text_beside_optional_text_is_filled_but_never_from_a_question() {
        let schema = json!({"type": "object", "required": ["title"], "properties": {
            "title": {"type": "string"}, "description": {"type": "string"}}});
        let fill = |q: &str| fill("open_ticket", &schema, q).map(Value::Object);
        assert_eq!(
            fill("open a ticket: the printer is jammed").unwrap(),
            json!({"title": "the printer is jammed"}),
            "what follows the colon is the value, and optional text is not guessed"
        );
        assert_eq!(fill("open ticket printer jammed").unwrap(), json!({"title": "printer jammed"}));
        let err = fill("what are my open tickets?").unwrap_err();
        assert_eq!(err.message, "the `open_ticket` tool needs `title` (text): none found in the question");
        assert!(fill("is there an open ticket?").is_err());
    }

    #[test]
    fn get_sum_reads_numbers_in_order() {
        let fill = |q: &str| fill("get-sum", &get_sum(), q).map(Value::Object);
        assert_eq!(fill("add 2 and 40").unwrap(), json!({"a": 2, "b": 40}));
        assert_eq!(fill("sum of $120k and 1,500").unwrap(), json!({"a": 120_000, "b": 1500}));
        assert_eq!(fill("what is 2.5 plus 0.25?").unwrap(), json!({"a": 2.5, "b": 0.25}));
        let err = fill("add 2 to something").unwrap_err();
        assert_eq!(err.message, "the `get-sum` tool needs `b` (a number): none found in the question");
        let err = fill("add them").unwrap_err();
        assert!(err.message.contains("`a` (a number) and `b` (a number)"), "{err}");
    }

    #[test]
    fn numbers_respect_bounds_and_integers() {
        let schema = json!({"type": "object", "required": ["page", "ratio"], "properties": {
            "page": {"type": "integer", "minimum": 1, "maximum": 50},
            "ratio": {"type": "number", "maximum": 1},
            "year": {"type": "integer", "minimum": 1900}
        }});
        let args = fill("t", &schema, "ratio 0.5 for 2024 on page 3").unwrap();
        assert_eq!(Value::Object(args), json!({"page": 3, "ratio": 0.5, "year": 2024}));
        // Nothing fits a required property: it takes the next number so validation can explain.
        let args = fill("t", &schema, "page 70 ratio 0.5").unwrap();
        assert_eq!(args["page"], json!(70));
        let err = validate("t", &schema, &args).unwrap_err();
        assert_eq!(err.message, "`page` must be at most 50, got 70");
        // An optional property takes no number that does not fit.
        let args = extract("t", &schema, "page 3 ratio 0.5 in 1850");
        assert!(!args.contains_key("year"), "{args:?}");
    }

    #[test]
    fn percentages_go_to_percentage_properties() {
        let schema = json!({"type": "object", "required": ["discount_pct", "amount"], "properties": {
            "discount_pct": {"type": "number", "minimum": 0, "maximum": 100},
            "amount": {"type": "number"}
        }});
        let args = extract("deal_desk", &schema, "40000 deal at 25% off");
        assert_eq!(Value::Object(args), json!({"discount_pct": 25, "amount": 40000}));
        // Without percentage properties, a percentage is just a number.
        let args = extract("t", &json!({"properties": {"rate": {"type": "number"}}}), "set it to 7.5%");
        assert_eq!(args["rate"], json!(7.5));
    }

    #[test]
    fn strings_enums_booleans_emails_dates_and_ids() {
        let schema = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "string", "pattern": "^TCK-[0-9]+$"},
            "state": {"type": "string", "enum": ["open", "closed", "on_hold"]},
            "assignee": {"type": "string", "format": "email"},
            "due": {"type": "string", "format": "date"},
            "include_comments": {"type": "boolean"},
            "notify": {"type": "boolean", "default": true},
            "title": {"type": "string"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": 10}
        }});
        let args = fill(
            "update_ticket",
            &schema,
            "put TCK-1003 on hold for Erin@Example.com by 2025-01-31, titled \"Fix 2 bugs\", notify: no, \
             include comments, top 5",
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            json!({"id": "TCK-1003", "state": "on_hold", "assignee": "erin@example.com", "due": "2025-01-31",
                   "include_comments": true, "notify": false, "title": "Fix 2 bugs", "limit": 5})
        );
        let args = fill("update_ticket", &schema, "close tck-7 without comments").unwrap_err();
        assert_eq!(
            args.message,
            "the `update_ticket` tool needs `id` (text matching `^TCK-[0-9]+$`): none found in the question"
        );
        let args = fill("update_ticket", &schema, "mark TCK-7 closed without comments").unwrap();
        assert_eq!(args["include_comments"], json!(false));
        assert_eq!(args["state"], json!("closed"));
        assert_eq!(args["notify"], json!(true), "default");
        assert_eq!(args["limit"], json!(10), "default");
        assert!(!args.contains_key("title"), "optional free text is not guessed");
    }

    #[test]
    fn validation_names_the_argument() {
        let v = ArgsValidator::new("get-sum", &get_sum()).unwrap();
        assert!(v.validate(&obj(json!({"a": 2, "b": 40}))).is_ok());
        let err = v.validate(&obj(json!({"a": 2, "b": "forty"}))).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert_eq!(err.message, "`b` must be a number, got \"forty\"");
        let err = v.validate(&obj(json!({"a": 2}))).unwrap_err();
        assert_eq!(err.message, "the `get-sum` tool needs `b` (a number)");

        let err = validate("echo", &echo(), &obj(json!({"message": 3}))).unwrap_err();
        assert_eq!(err.message, "`message` must be a string, got 3");

        let schema = json!({"type": "object", "additionalProperties": false, "properties": {
            "state": {"enum": ["open", "closed"]},
            "email": {"type": "string", "format": "email"},
            "n": {"type": ["integer", "null"], "minimum": 1}
        }});
        let v = ArgsValidator::new("t", &schema).unwrap();
        let msg = |args: Value| v.validate(&obj(args)).unwrap_err().message;
        assert_eq!(msg(json!({"state": "x"})), "`state` must be one of open, closed, got \"x\"");
        assert_eq!(msg(json!({"email": "nope"})), "`email` must be a valid email, got \"nope\"");
        assert_eq!(msg(json!({"n": 0})), "`n` must be at least 1, got 0");
        assert_eq!(msg(json!({"n": 1.5})), "`n` must be a whole number or null, got 1.5");
        assert_eq!(msg(json!({"x": 1})), "the `t` tool takes only email, n, state; unexpected `x`");
        assert!(v.validate(&obj(json!({"n": null, "state": "open"}))).is_ok());
    }

    #[test]
    fn invalid_schemas_fail_to_compile_and_remote_refs_are_not_fetched() {
        let err = ArgsValidator::new("t", &json!({"type": "object", "properties": {"a": {"type": "numbr"}}}))
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.message.starts_with("the `t` tool's argument schema is invalid"), "{err}");
        assert!(ArgsValidator::new("t", &json!({"type": "array"})).is_err());
        assert!(ArgsValidator::new("t", &json!([1])).is_err());
        // Would need the network: refused at compile time instead of fetched.
        let remote = json!({"type": "object", "properties": {"a": {"$ref": "http://127.0.0.1:9/s.json"}}});
        assert!(ArgsValidator::new("t", &remote).is_err());
        // Local refs work.
        let local = json!({"type": "object", "$defs": {"n": {"type": "number"}},
            "properties": {"a": {"$ref": "#/$defs/n"}}});
        let v = ArgsValidator::new("t", &local).unwrap();
        assert_eq!(
            v.validate(&obj(json!({"a": "x"}))).unwrap_err().message,
            "`a` must be a number, got \"x\""
        );
    }

    #[test]
    fn numbers_and_percentages_are_read_from_text() {
        let values =
            |s: &str| -> Vec<(f64, bool)> { scan_numbers(s).iter().map(|f| (f.value, f.percent)).collect() };
        assert_eq!(values("a 25% discount on a 40000 deal"), vec![(25.0, true), (40_000.0, false)]);
        assert_eq!(
            values("12.5 percent off $40,000 or $40k or 1.2 million, 3 pct"),
            vec![(12.5, true), (40_000.0, false), (40_000.0, false), (1_200_000.0, false), (3.0, true)]
        );
        assert_eq!(values("q3 and the 2nd deal, 7 thousand"), vec![(7_000.0, false)]);
        assert_eq!(values("1,5 and 1,000,000."), vec![(1.0, false), (5.0, false), (1e6, false)]);
    }

    #[test]
    fn identifiers_split_into_words() {
        assert_eq!(name_words("include_closed"), vec!["include", "closed"]);
        assert_eq!(name_words("includeClosed"), vec!["include", "closed"]);
        assert_eq!(name_words("get-sum"), vec!["get", "sum"]);
    }
}
