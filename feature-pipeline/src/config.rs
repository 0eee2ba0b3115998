//! The feature repository file (TOML): sources, shared views and feature groups with their
//! validation rules. Loading checks the structure (every unknown key, types) with line and column;
//! [`FeatureRepo::problems`] checks the meaning (names, rules, SQL syntax) without data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, StringArray};
use arrow::compute::CastOptions;
use arrow::datatypes::DataType;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use storage::{Name, NameKind, Severity};

use crate::error::{Error, Result};

/// A parsed feature repository file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureRepo {
    /// Raw inputs, each registered as a SQL table under its key.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Named SQL views shared by groups (may use sources and other views).
    #[serde(default)]
    pub views: BTreeMap<String, ViewConfig>,
    /// Feature groups, each committed as a versioned feature table. Kept in declaration
    /// order: a run starts them in that order, so the longest are best declared first.
    #[serde(default)]
    pub groups: IndexMap<String, GroupConfig>,
}

/// File format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
    Jsonl,
}

/// A raw input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub format: Format,
    /// A file or directory: relative to the config file, absolute, or a URL (file://, s3://...).
    pub path: String,
    /// Adds an int64 column with each row's 0-based position in file order.
    pub row_index: Option<String>,
    /// A column (date, time stamp or integer) the rows are in ascending order of, e.g. the
    /// event time of an append-only log. A row earlier than the row before it, or a null,
    /// fails the run (bad input) naming the row. Checked once per run, before any group
    /// runs, reading only this column.
    pub ordered_by: Option<String>,
    /// CSV: whether the first line is a header (default true).
    pub has_header: Option<bool>,
    /// CSV: field delimiter (default `,`).
    pub delimiter: Option<char>,
    /// Declared schema. CSV and JSON lines are read with it (CSV by position); each Parquet
    /// file must have these columns with these types (others are read too). Inferred when
    /// absent.
    pub columns: Option<Vec<SourceColumn>>,
}

/// A declared source column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

/// A shared SQL view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    pub sql: String,
    #[serde(default)]
    pub description: String,
    /// Compute the view once per run, when a group first reads it, and keep it in memory for
    /// the rest of the run, instead of recomputing it in every group that reads it (faster
    /// when several groups share it; costs its size in memory, so best for small aggregates).
    #[serde(default)]
    pub cache: bool,
}

/// A feature group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    pub entity_keys: Vec<String>,
    pub event_time: String,
    /// The transformation; its output columns are the table's columns.
    pub sql: String,
    /// Declared output columns in order (name -> type, description). The query must produce
    /// exactly these.
    #[serde(default)]
    pub columns: Option<toml::Table>,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A declared output column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnConfig {
    #[serde(rename = "type")]
    pub data_type: String,
    #[serde(default)]
    pub description: String,
    /// Defaults to false for entity keys and the event time, true otherwise.
    pub nullable: Option<bool>,
}

/// The kinds of validation rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    RequiredColumns,
    ForbiddenColumns,
    NotNull,
    MaxNullFraction,
    Range,
    AllowedValues,
    RowCount,
    UniqueKey,
    Finite,
    Drift,
}

impl RuleKind {
    /// Why a rule of this kind cannot measure a column of `data_type`, if it cannot. Both
    /// `check` (declared types) and the run (the output's types) fail such a rule.
    pub fn cannot_measure(self, data_type: &DataType) -> Option<String> {
        let numeric = data_type.is_numeric();
        match self {
            RuleKind::Range if !numeric && !storage::types::is_temporal(data_type) => Some(
                format!("range applies to numbers, dates and time stamps, not {data_type}"),
            ),
            RuleKind::Finite if !numeric => {
                Some(format!("finite applies to numbers, not {data_type}"))
            }
            RuleKind::Drift if !numeric => Some(format!(
                "drift is measured on numeric columns, not {data_type}"
            )),
            _ => None,
        }
    }
}

/// Drift measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    Psi,
    Ks,
}

/// What a failed rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeverityConfig {
    #[default]
    Error,
    Warn,
}

impl From<SeverityConfig> for Severity {
    fn from(s: SeverityConfig) -> Self {
        match s {
            SeverityConfig::Error => Severity::Error,
            SeverityConfig::Warn => Severity::Warn,
        }
    }
}

/// One validation rule. Which parameters apply depends on `rule` (see [`FeatureRepo::problems`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub rule: RuleKind,
    pub column: Option<String>,
    pub columns: Option<Vec<String>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub values: Option<Vec<AllowedValue>>,
    pub method: Option<DriftMethod>,
    #[serde(default)]
    pub severity: SeverityConfig,
}

/// One value of an `allowed_values` rule: a TOML string, integer, float or boolean. Values
/// are compared as the column's type, not as text: `1`, `"1"` and `1.0` are the same value of
/// a float column, and a date column takes `"2001-07-02"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AllowedValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

impl AllowedValue {
    fn text(&self) -> String {
        match self {
            AllowedValue::Bool(b) => b.to_string(),
            AllowedValue::Integer(i) => i.to_string(),
            AllowedValue::Float(f) => f.to_string(),
            AllowedValue::Text(s) => s.clone(),
        }
    }
}

/// The values of an `allowed_values` rule as an array of `data_type`, or which value is not
/// one (by Arrow's cast from text: `"x"` is not an int64, `"2001-02-30"` not a date32).
pub fn allowed_array(values: &[AllowedValue], data_type: &DataType) -> Result<ArrayRef, String> {
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast = |values: &[AllowedValue]| {
        let text: StringArray = values.iter().map(|v| Some(v.text())).collect();
        arrow::compute::cast_with_options(&text, data_type, &strict)
    };
    cast(values).map_err(|e| {
        let bad = values
            .iter()
            .find(|v| cast(std::slice::from_ref(*v)).is_err());
        match bad {
            Some(v) => format!("allowed value {:?} is not of type {data_type}", v.text()),
            None => format!("allowed values are not of type {data_type}: {e}"),
        }
    })
}

/// A loaded config file with what is needed to resolve relative paths and hash it.
#[derive(Debug, Clone)]
pub struct LoadedRepo {
    pub path: PathBuf,
    pub text: String,
    pub repo: FeatureRepo,
}

impl LoadedRepo {
    /// Reads and parses a feature repository file.
    pub fn load(path: &Path) -> Result<LoadedRepo> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.display().to_string(),
            source,
        })?;
        let repo = parse(&text).map_err(|e| match e {
            Unparsed::First(e) => Error::ParseConfig {
                path: path.display().to_string(),
                message: e.to_string(),
            },
            Unparsed::UnknownKeys(problems) => Error::InvalidConfig {
                path: path.display().to_string(),
                problems,
            },
        })?;
        Ok(LoadedRepo {
            path: path.to_path_buf(),
            text,
            repo,
        })
    }

    /// Resolves a source path: URLs as given, relative paths against the config's directory.
    pub fn resolve(&self, path: &str) -> String {
        if path.contains("://") || Path::new(path).is_absolute() {
            return path.to_string();
        }
        let base = self.path.parent().unwrap_or(Path::new("."));
        base.join(path).display().to_string()
    }
}

/// Why a file did not parse.
enum Unparsed {
    /// A structural error (syntax, a wrong type) other than an unknown key: the parser's own
    /// message, with the line shown.
    First(toml::de::Error),
    /// Unknown keys, each with its line and column, then what else is wrong (the file with
    /// those keys removed parsed, or failed on the error that ends the list).
    UnknownKeys(Vec<String>),
}

/// Parses a repository file. The parser stops at its first error; so that a file with several
/// unknown keys (typos) is not fixed one run at a time, each unknown `key = value` is blanked
/// out (spaces, so that later positions still point into the file as written) and the file
/// parsed again, up to a limit.
fn parse(text: &str) -> std::result::Result<FeatureRepo, Unparsed> {
    let mut blanked = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..100 {
        let e = match toml::from_str::<FeatureRepo>(&blanked) {
            Ok(repo) if problems.is_empty() => return Ok(repo),
            Ok(repo) => {
                problems.extend(repo.problems());
                return Err(Unparsed::UnknownKeys(problems));
            }
            Err(e) => e,
        };
        let unknown = e
            .span()
            .filter(|_| e.message().starts_with("unknown field"))
            .and_then(|key| {
                blank_entry(&blanked, key.clone()).or_else(|| blank_lines(&blanked, key))
            });
        match unknown {
            None if problems.is_empty() => return Err(Unparsed::First(e)),
            None => {
                problems.push(located(text, &e));
                return Err(Unparsed::UnknownKeys(problems));
            }
            Some(next) => {
                problems.push(located(text, &e));
                blanked = next;
            }
        }
    }
    problems.push("(more unknown keys may follow: only the first 100 are reported)".into());
    Err(Unparsed::UnknownKeys(problems))
}

/// `line L, column C: message`, for an error in `text`.
fn located(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!("line {line}, column {column}: {}", e.message())
}

/// `text` with an unknown key that is not a `key = value` entry blanked by whole lines: a
/// table header (`[sourcez.x]`, `[[groups.g.rulez]]`) with its section up to the next header,
/// or a dotted key at the start of its line (`a.b = 1`). `None` unless the result is still
/// TOML, so a section that holds a line starting with `[` in a multi-line value is left as it is.
fn blank_lines(text: &str, key: std::ops::Range<usize>) -> Option<String> {
    let start = text.get(..key.start)?.rfind('\n').map_or(0, |i| i + 1);
    let line_end = |from: usize| text[from..].find('\n').map_or(text.len(), |i| from + i + 1);
    let first = line_end(start);
    let end = match text[start..].trim_start().starts_with('[') {
        // A header: its section runs to the next header.
        true => {
            let mut end = first;
            while end < text.len() && !text[end..].trim_start().starts_with('[') {
                end = line_end(end);
            }
            end
        }
        // A dotted key: only when it starts its line and its value ends there.
        false if text[start..key.start].trim().is_empty() => first,
        false => return None,
    };
    let mut bytes = text.as_bytes().to_vec();
    for b in &mut bytes[start..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
    let blanked = String::from_utf8(bytes).ok()?;
    toml::de::DeTable::parse(&blanked).ok()?;
    Some(blanked)
}

/// `text` with the `key = value` entry whose key is at `key` replaced by spaces (and a comma
/// after it, in an inline table), or `None` if the key is not such an entry (a table header).
fn blank_entry(text: &str, key: std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn find(table: &DeTable<'_>, key: &std::ops::Range<usize>) -> Option<(usize, usize)> {
        table.iter().find_map(|(k, v)| {
            if k.span().start <= key.start && key.end <= k.span().end {
                return Some((k.span().start, v.span().end));
            }
            in_value(v.get_ref(), key)
        })
    }
    fn in_value(value: &DeValue<'_>, key: &std::ops::Range<usize>) -> Option<(usize, usize)> {
        match value {
            DeValue::Table(t) => find(t, key),
            DeValue::Array(items) => items.iter().find_map(|v| in_value(v.get_ref(), key)),
            _ => None,
        }
    }
    let document = DeTable::parse(text).ok()?;
    let (start, value_end) = find(document.get_ref(), &key)?;
    // Only `key = value`: a key from a table header has no `=` after it.
    if !text.get(key.end..)?.trim_start().starts_with('=') || value_end < key.end {
        return None;
    }
    let rest = text.get(value_end..)?;
    let spaces = rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let end = match rest[spaces..].starts_with(',') {
        true => value_end + spaces + 1,
        false => value_end,
    };
    let mut bytes = text.as_bytes().to_vec();
    for b in &mut bytes[start..end] {
        if *b != b'\n' && *b != b'\r' {
            *b = b' ';
        }
    }
    String::from_utf8(bytes).ok()
}

/// A group's declared column, in order.
#[derive(Debug, Clone)]
pub struct DeclaredColumn {
    pub name: String,
    pub config: ColumnConfig,
}

impl GroupConfig {
    /// The declared columns, in declaration order; `Err` names the first malformed one.
    pub fn declared_columns(&self) -> Result<Option<Vec<DeclaredColumn>>, String> {
        let Some(table) = &self.columns else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for (name, value) in table {
            let config: ColumnConfig = value
                .clone()
                .try_into()
                .map_err(|e| format!("column {name:?}: {e}"))?;
            out.push(DeclaredColumn {
                name: name.clone(),
                config,
            });
        }
        Ok(Some(out))
    }
}

impl FeatureRepo {
    /// Every problem found without reading data, each prefixed with its location.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut sql_names: Vec<(&str, &str)> = Vec::new();
        for (name, source) in &self.sources {
            let at = format!("sources.{name}");
            sql_names.push((name, "source"));
            if let Err(e) = Name::new(NameKind::Dataset, name.as_str()) {
                problems.push(format!("{at}: {e}"));
            }
            if source.path.trim().is_empty() {
                problems.push(format!("{at}.path: must not be empty"));
            }
            let mut names = std::collections::HashSet::new();
            for column in source.columns.iter().flatten() {
                if let Err(e) = storage::types::parse_type(&column.data_type) {
                    problems.push(format!("{at}.columns.{}: {e}", column.name));
                }
                if !names.insert(column.name.as_str()) {
                    problems.push(format!("{at}.columns.{}: declared twice", column.name));
                }
            }
            if source.format != Format::Csv
                && (source.has_header.is_some() || source.delimiter.is_some())
            {
                problems.push(format!(
                    "{at}: has_header and delimiter apply to csv sources only"
                ));
            }
        }
        for (name, view) in &self.views {
            let at = format!("views.{name}");
            if sql_names.iter().any(|(n, _)| n == name) {
                problems.push(format!("{at}: name already used by a source"));
            }
            sql_names.push((name, "view"));
            if let Err(e) = Name::new(NameKind::Dataset, name.as_str()) {
                problems.push(format!("{at}: {e}"));
            }
            if let Err(e) = parse_sql(&view.sql) {
                problems.push(format!("{at}.sql: {e}"));
            }
        }
        if self.groups.is_empty() {
            problems.push("groups: no feature group is defined".into());
        }
        for (name, group) in &self.groups {
            let at = format!("groups.{name}");
            if let Err(e) = Name::new(NameKind::FeatureGroup, name.as_str()) {
                problems.push(format!("{at}: {e}"));
            }
            if let Err(e) = parse_sql(&group.sql) {
                problems.push(format!("{at}.sql: {e}"));
            }
            if group.entity_keys.is_empty() {
                problems.push(format!(
                    "{at}.entity_keys: at least one entity key column is required"
                ));
            }
            let declared = match group.declared_columns() {
                Ok(d) => d,
                Err(e) => {
                    problems.push(format!("{at}.columns: {e}"));
                    None
                }
            };
            let known: Option<Vec<&str>> = declared
                .as_ref()
                .map(|d| d.iter().map(|c| c.name.as_str()).collect());
            let check_column = |column: &str, what: &str, problems: &mut Vec<String>| {
                if let Some(known) = &known
                    && !known.contains(&column)
                {
                    problems.push(format!(
                        "{at}.{what}: unknown column {column:?} (declared: {})",
                        known.join(", ")
                    ));
                }
            };
            for key in &group.entity_keys {
                check_column(key, "entity_keys", &mut problems);
            }
            check_column(&group.event_time, "event_time", &mut problems);
            for column in declared.iter().flatten() {
                match storage::types::parse_type(&column.config.data_type) {
                    Ok(t)
                        if column.name == group.event_time && !storage::types::is_temporal(&t) =>
                    {
                        problems.push(format!(
                            "{at}.columns.{}: the event time must be a date or timestamp, not {}",
                            column.name, column.config.data_type
                        ));
                    }
                    Ok(t) if storage::table::unportable(&t) => problems.push(format!(
                        "{at}.columns.{}: {} cannot be stored (Parquet readers do not read it \
                         back as written); declare time stamps in ms, us or ns and dates as \
                         date32[day] (the query's values are cast)",
                        column.name, column.config.data_type
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{at}.columns.{}: {e}", column.name)),
                }
            }
            for (i, rule) in group.rules.iter().enumerate() {
                let at_rule = format!("rules[{i}] ({:?})", rule.rule);
                for problem in rule_problems(rule) {
                    problems.push(format!("{at}.{at_rule}: {problem}"));
                }
                if let Some(column) = &rule.column {
                    check_column(column, &at_rule, &mut problems);
                }
                // Allowed values must be values of the column's declared type.
                let declared_type = declared
                    .iter()
                    .flatten()
                    .find(|c| Some(&c.name) == rule.column.as_ref())
                    .and_then(|c| storage::types::parse_type(&c.config.data_type).ok());
                if let (Some(values), Some(data_type)) = (&rule.values, &declared_type)
                    && let Err(e) = allowed_array(values, data_type)
                {
                    problems.push(format!("{at}.{at_rule}.values: {e}"));
                }
                if let Some(problem) = declared_type.and_then(|t| rule.rule.cannot_measure(&t)) {
                    problems.push(format!("{at}.{at_rule}: {problem}"));
                }
                if rule.rule == RuleKind::RequiredColumns {
                    for column in rule.columns.iter().flatten() {
                        check_column(column, &at_rule, &mut problems);
                    }
                }
            }
        }
        problems
    }

    /// Fails with every problem if there are any.
    pub fn check(&self, path: &Path) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidConfig {
                path: path.display().to_string(),
                problems,
            })
        }
    }
}

/// Which parameters each rule needs and allows.
fn rule_problems(rule: &RuleConfig) -> Vec<String> {
    use RuleKind::*;
    let mut problems = Vec::new();
    let needs_column = matches!(
        rule.rule,
        NotNull | MaxNullFraction | Range | AllowedValues | Finite | Drift
    );
    let needs_columns = matches!(rule.rule, RequiredColumns | ForbiddenColumns);
    if needs_column && rule.column.is_none() {
        problems.push("needs `column`".to_string());
    }
    if !needs_column && rule.column.is_some() {
        problems.push("does not take `column`".to_string());
    }
    if needs_columns && rule.columns.as_ref().is_none_or(Vec::is_empty) {
        problems.push("needs a non-empty `columns` list".to_string());
    }
    if !needs_columns && rule.columns.is_some() {
        problems.push("does not take `columns`".to_string());
    }
    let takes_min = matches!(rule.rule, Range | RowCount);
    let takes_max = matches!(rule.rule, Range | RowCount | MaxNullFraction | Drift);
    if !takes_min && rule.min.is_some() {
        problems.push("does not take `min`".to_string());
    }
    if !takes_max && rule.max.is_some() {
        problems.push("does not take `max`".to_string());
    }
    match rule.rule {
        Range | RowCount if rule.min.is_none() && rule.max.is_none() => {
            problems.push("needs `min`, `max` or both".to_string());
        }
        Range | RowCount if rule.min.zip(rule.max).is_some_and(|(lo, hi)| lo > hi) => {
            problems.push("`min` is greater than `max`".to_string());
        }
        MaxNullFraction if !rule.max.is_some_and(|m| (0.0..=1.0).contains(&m)) => {
            problems.push("needs `max` between 0 and 1".to_string());
        }
        Drift if rule.max.is_none() => {
            problems.push("needs `max` (the drift threshold)".to_string())
        }
        _ => {}
    }
    if rule.rule == Drift && rule.method.is_none() {
        problems.push("needs `method` (psi or ks)".to_string());
    }
    if rule.rule != Drift && rule.method.is_some() {
        problems.push("does not take `method`".to_string());
    }
    if rule.rule == AllowedValues && rule.values.as_ref().is_none_or(Vec::is_empty) {
        problems.push("needs a non-empty `values` list".to_string());
    }
    if rule.rule != AllowedValues && rule.values.is_some() {
        problems.push("does not take `values`".to_string());
    }
    problems
}

/// Parses SQL for syntax only; the error carries line and column.
pub fn parse_sql(sql: &str) -> Result<(), String> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| e.to_string())?;
    if statements.len() != 1 {
        return Err(format!(
            "expected one statement, found {}",
            statements.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FeatureRepo;

    /// `check` rejects an allowed value that is not of its column's declared type, naming
    /// the rule and the value, and takes TOML numbers, booleans and strings that are.
    #[test]
    fn check_reads_allowed_values_as_the_declared_type() {
        let repo = |values: &str| {
            let text = format!(
                r#"
[groups.g]
entity_keys = ["k"]
event_time = "t"
sql = "SELECT k, t, n, x, b FROM s"
[groups.g.columns]
k = {{ type = "int64" }}
t = {{ type = "date32[day]" }}
n = {{ type = "int64" }}
x = {{ type = "double" }}
b = {{ type = "bool" }}
[[groups.g.rules]]
rule = "allowed_values"
column = "n"
values = {values}
[[groups.g.rules]]
rule = "allowed_values"
column = "x"
values = [0.5, 1, "2"]
[[groups.g.rules]]
rule = "allowed_values"
column = "b"
values = [true]
"#
            );
            toml::from_str::<FeatureRepo>(&text).unwrap().problems()
        };
        assert_eq!(repo("[1, \"2\"]"), Vec::<String>::new());
        assert_eq!(
            repo("[1, \"two\", 3.5]"),
            [
                r#"groups.g.rules[0] (AllowedValues).values: allowed value "two" is not of type Int64"#
            ]
        );
    }

    /// A source column declared twice is a configuration error.
    #[test]
    fn a_source_column_declared_twice_is_a_problem() {
        let text = r#"
[sources.s]
format = "csv"
path = "s.csv"
columns = [{ name = "v", type = "double" }, { name = "v", type = "int64" }]
"#;
        let problems = toml::from_str::<FeatureRepo>(text).unwrap().problems();
        assert_eq!(problems[0], "sources.s.columns.v: declared twice");
    }

    /// `check` rejects declared column types Parquet readers do not read back as written.
    #[test]
    fn check_rejects_types_parquet_cannot_hold() {
        let text = r#"
[groups.g]
entity_keys = ["k"]
event_time = "t"
sql = "SELECT k, t, d FROM s"
[groups.g.columns]
k = { type = "int64" }
t = { type = "timestamp[s]" }
d = { type = "date64[ms]" }
"#;
        let problems = toml::from_str::<FeatureRepo>(text).unwrap().problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("groups.g.columns.t: timestamp[s] cannot be stored"));
        assert!(problems[1].starts_with("groups.g.columns.d: date64[ms] cannot be stored"));
    }

    /// `check` rejects drift, range and finite rules on a column declared with a type they
    /// cannot measure (a date takes `range`).
    #[test]
    fn check_rejects_rules_their_column_type_cannot_take() {
        let text = r#"
[groups.g]
entity_keys = ["k"]
event_time = "t"
sql = "SELECT k, t, s FROM src"
columns = { k = { type = "int64" }, t = { type = "date32[day]" }, s = { type = "string" } }
rules = [
  { rule = "drift", column = "s", method = "psi", max = 0.2 },
  { rule = "range", column = "s", min = 0 },
  { rule = "range", column = "t", min = 0 },
  { rule = "finite", column = "s" },
]
"#;
        let problems = toml::from_str::<FeatureRepo>(text).unwrap().problems();
        assert_eq!(
            problems,
            [
                "groups.g.rules[0] (Drift): drift is measured on numeric columns, not Utf8",
                "groups.g.rules[1] (Range): range applies to numbers, dates and time stamps, not Utf8",
                "groups.g.rules[3] (Finite): finite applies to numbers, not Utf8",
            ]
        );
    }

    /// Groups keep the order of the file (a run starts them in it), not name order.
    #[test]
    fn groups_keep_declaration_order() {
        let text = ["zeta", "alpha", "mid"]
            .iter()
            .map(|g| {
                format!(
                    "[groups.{g}]\nentity_keys = [\"k\"]\nevent_time = \"t\"\nsql = \"SELECT 1\"\n"
                )
            })
            .collect::<String>();
        let repo: FeatureRepo = toml::from_str(&text).unwrap();
        let order: Vec<&str> = repo.groups.keys().map(String::as_str).collect();
        assert_eq!(order, ["zeta", "alpha", "mid"]);
    }
}
