//! The record of a CSV or JSON-lines source that its reader rejected, named by file and line.
//!
//! The engine reads a text file in byte ranges on several cores, so the reader's own error
//! ("line 3") counts from the start of a range or batch, not of the file, and names no file.
//! When a group fails on such an error, [`first_bad_record`] reads the session's text sources
//! again in file order, a batch at a time and, in the batch that fails, a record at a time.
//! This runs only on the error path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

use crate::config::Format;
use crate::error::Error;

/// Records decoded per batch before a failing batch is read again record by record.
const BATCH: usize = 4096;

/// A text source as the engine reads it: the schema (declared or inferred) and CSV options.
#[derive(Debug)]
pub struct TextSource {
    pub name: String,
    pub path: String,
    pub format: Format,
    pub extension: String,
    pub schema: SchemaRef,
    pub has_header: bool,
    pub delimiter: u8,
    /// The schema is the declared one, not inferred from the first rows.
    pub declared: bool,
}

/// The session's text sources in registration order, in a `SessionConfig` extension.
#[derive(Debug, Default)]
pub struct TextSources(Mutex<Vec<Arc<TextSource>>>);

impl TextSources {
    pub fn add(&self, source: TextSource) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(source));
    }
}

/// The error type a kept failure (a view or check computed once per session) is returned
/// with when a source's reader raised it, so that [`is_reader_error`] still recognises it.
#[derive(Debug)]
struct ReaderFailed(String);

impl std::fmt::Display for ReaderFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReaderFailed {}

/// A failure kept to be returned again, e.g. from a `OnceCell`.
#[derive(Clone, Debug)]
pub struct Kept {
    message: String,
    reader: bool,
}

impl Kept {
    pub fn new(error: &DataFusionError, message: String) -> Self {
        Self {
            message,
            reader: is_reader_error(error),
        }
    }

    /// A failure found by the code keeping it, not by a reader.
    pub fn other(message: String) -> Self {
        Self {
            message,
            reader: false,
        }
    }

    pub fn error(&self) -> DataFusionError {
        match self.reader {
            true => DataFusionError::External(Box::new(ReaderFailed(self.message.clone()))),
            false => DataFusionError::Execution(self.message.clone()),
        }
    }
}

/// Whether a CSV or JSON reader raised `error`: a value it could not parse, a record with the
/// wrong number of fields, malformed JSON.
pub fn is_reader_error(error: &DataFusionError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.is::<ReaderFailed>()
            || matches!(
                e.downcast_ref::<ArrowError>(),
                Some(
                    ArrowError::ParseError(_) | ArrowError::CsvError(_) | ArrowError::JsonError(_)
                )
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The first record of the session's text sources that their reader rejects, as the source
/// error naming its file and line; `None` when every record reads (or the files cannot be
/// read again: then the engine's error stands). `engine_error` is the reader's error as the
/// engine reported it: the column (and value) it names narrow the search to what the query
/// read, so a bad value in a column or source the query never reads is not blamed.
///
/// `scanned` is the files the failing plan scans directly (see [`scanned_files`]): sources with
/// one of them are searched first. It only orders the search, since a source can also be read
/// out of sight of the plan (in file order for a row index, or through a cached view).
pub async fn first_bad_record(
    ctx: &SessionContext,
    engine_error: &str,
    scanned: &HashSet<String>,
) -> Option<Error> {
    let sources: Vec<Arc<TextSource>> = ctx
        .copied_config()
        .get_extension::<TextSources>()?
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let clue = Clue::from_message(engine_error);
    let state = ctx.state();
    let mut candidates = Vec::new();
    for source in sources {
        let Some(only) = clue.column_of(&source) else {
            continue;
        };
        let listed = crate::source::source_files(&state, &source.path, &source.extension).await;
        let (store, files) = match listed {
            Ok(listed) => listed,
            Err(e) => {
                tracing::debug!(source = %source.name, "cannot list again: {e}");
                continue;
            }
        };
        let in_plan = files
            .iter()
            .any(|(_, meta)| scanned.contains(meta.location.as_ref()));
        candidates.push((!in_plan, source, only, store, files));
    }
    // Stable: the plan's sources first, each group in declaration order.
    candidates.sort_by_key(|(elsewhere, ..)| *elsewhere);
    let mut fallback = None;
    for (_, source, only, store, files) in candidates {
        match find_in_files(&source, only, &store, files).await {
            Ok(Some((file, found))) => {
                let matches = clue.value.is_none() || clue.value == found.value;
                let error = Error::Source {
                    source_name: source.name.clone(),
                    path: file,
                    message: found.message,
                };
                if matches {
                    return Some(error);
                }
                fallback.get_or_insert(error);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(source = %source.name, "cannot read again: {e}"),
        }
    }
    fallback
}

/// The files a plan's file scans read (object store locations), to tell which sources a
/// failing query read.
pub fn scanned_files(plan: &dyn ExecutionPlan) -> HashSet<String> {
    let mut files = HashSet::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if let Some(scan) = node.downcast_ref::<DataSourceExec>()
            && let Some(config) = scan.data_source().downcast_ref::<FileScanConfig>()
        {
            for group in &config.file_groups {
                files.extend(
                    group
                        .files()
                        .iter()
                        .map(|f| f.object_meta.location.to_string()),
                );
            }
        }
        stack.extend(node.children().into_iter().map(|c| c.as_ref()));
    }
    files
}

/// What a reader's error message says about the record it rejected.
#[derive(Debug, Default, PartialEq)]
struct Clue {
    /// CSV: the column's index in the file and the text that did not parse.
    csv_column: Option<usize>,
    value: Option<String>,
    /// CSV: the number of fields a record should have.
    fields: Option<usize>,
    /// JSON: the field that did not decode.
    json_field: Option<String>,
}

impl Clue {
    fn from_message(message: &str) -> Self {
        let between = |start: &str, end: &str| {
            let from = message.find(start)? + start.len();
            let len = message[from..].find(end)?;
            Some(&message[from..from + len])
        };
        let number = |start: &str, end: &str| between(start, end)?.trim().parse().ok();
        Clue {
            csv_column: number(" for column ", " at line ")
                .or_else(|| number("Error parsing column ", " at line ")),
            value: between("Error while parsing value '", "' as type '").map(str::to_string),
            fields: message
                .contains("incorrect number of fields")
                .then(|| number(", expected ", " got"))
                .flatten(),
            json_field: between("whilst decoding field '", "'").map(str::to_string),
        }
    }

    /// Whether the error can be `source`'s, and if so the one column to search (`None`:
    /// every column).
    fn column_of(&self, source: &TextSource) -> Option<Option<usize>> {
        let width = source.schema.fields().len();
        match source.format {
            Format::Csv if self.json_field.is_some() => None,
            Format::Csv if self.fields.is_some_and(|n| n != width) => None,
            Format::Csv => match self.csv_column {
                Some(i) if i >= width => None,
                only => Some(only),
            },
            _ if self.csv_column.is_some() || self.fields.is_some() => None,
            _ => match &self.json_field {
                Some(name) => source.schema.index_of(name).ok().map(Some),
                None => Some(None),
            },
        }
    }
}

/// A bad record: what is wrong on which line, and the text of the value that did not parse.
#[derive(Debug)]
struct Found {
    message: String,
    value: Option<String>,
}

/// The file and description of the source's first bad record (in column `only`, if given).
async fn find_in_files(
    source: &TextSource,
    only: Option<usize>,
    store: &Arc<dyn ObjectStore>,
    files: Vec<(String, ObjectMeta)>,
) -> Result<Option<(String, Found)>, DataFusionError> {
    for (name, file) in files {
        let bytes = store
            .get(&file.location)
            .await?
            .into_stream()
            .map_err(DataFusionError::from);
        if let Some(found) = find_in_file(source, only, bytes).await? {
            return Ok(Some((name, found)));
        }
    }
    Ok(None)
}

/// A CSV or JSON decoder over bytes fed in any pieces.
enum Decoder {
    Csv(Box<arrow::csv::reader::Decoder>),
    Json(arrow::json::reader::Decoder),
}

impl Decoder {
    /// A decoder of `source`'s records, parsing only column `only` if given.
    fn new(source: &TextSource, only: Option<usize>, batch: usize) -> Result<Self, ArrowError> {
        let schema = source.schema.clone();
        Ok(match source.format {
            Format::Csv => {
                let mut builder = arrow::csv::ReaderBuilder::new(schema)
                    .with_delimiter(source.delimiter)
                    .with_batch_size(batch);
                if let Some(i) = only {
                    builder = builder.with_projection(vec![i]);
                }
                Self::Csv(Box::new(builder.build_decoder()))
            }
            _ => {
                let schema = match only {
                    Some(i) => Arc::new(Schema::new(vec![schema.field(i).clone()])),
                    None => schema,
                };
                Self::Json(
                    arrow::json::ReaderBuilder::new(schema)
                        .with_batch_size(batch)
                        .build_decoder()?,
                )
            }
        })
    }

    fn decode(&mut self, buf: &[u8]) -> Result<usize, ArrowError> {
        match self {
            Self::Csv(d) => d.decode(buf),
            Self::Json(d) => d.decode(buf),
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Self::Csv(d) => d.flush(),
            Self::Json(d) => d.flush(),
        }
    }
}

/// Reads one file a batch at a time, keeping the bytes of the current batch; the batch that
/// fails is read again a record at a time to find the record and its line.
async fn find_in_file<B: AsRef<[u8]>>(
    source: &TextSource,
    only: Option<usize>,
    mut bytes: impl futures::Stream<Item = Result<B, DataFusionError>> + Unpin,
) -> Result<Option<Found>, DataFusionError> {
    let mut decoder = Decoder::new(source, only, BATCH)?;
    let mut header = Header::new(source.format == Format::Csv && source.has_header);
    // The bytes of the batch being decoded, and the file line it starts on.
    let mut batch: Vec<u8> = Vec::new();
    let mut first_line = 1usize;
    loop {
        let next = bytes.next().await.transpose()?;
        let end = next.is_none();
        let mut rest = header.skip(next.as_ref().map_or(&[], |c| c.as_ref()), &mut first_line);
        loop {
            let read = match decoder.decode(rest) {
                Ok(read) => read,
                Err(_) => {
                    batch.extend_from_slice(rest);
                    return Ok(find_in_batch(source, only, &batch, first_line));
                }
            };
            batch.extend_from_slice(&rest[..read]);
            rest = &rest[read..];
            // A full batch stops short of the input; the last one ends with it.
            if rest.is_empty() && !end {
                break;
            }
            match decoder.flush() {
                Ok(flushed) => {
                    first_line += newlines(&batch);
                    batch.clear();
                    // Nothing read and nothing to flush: the decoder takes no more.
                    if rest.is_empty() || (read == 0 && flushed.is_none()) {
                        break;
                    }
                }
                Err(_) => return Ok(find_in_batch(source, only, &batch, first_line)),
            }
        }
        if end {
            return Ok(None);
        }
    }
}

/// The first record of `batch` (starting on file line `first_line`) that fails on its own.
fn find_in_batch(
    source: &TextSource,
    only: Option<usize>,
    batch: &[u8],
    first_line: usize,
) -> Option<Found> {
    let mut decoder = Decoder::new(source, only, 1).ok()?;
    let found = |line: usize, problem: String, value: Option<String>| Found {
        message: format!("line {line}: {problem}"),
        value,
    };
    let mut at = 0;
    while at < batch.len() {
        let start = at + blank_prefix(source.format, &batch[at..]);
        let line = first_line + newlines(&batch[..start]);
        let mut end = at;
        // Decode one record (the decoder stops after it), then parse it.
        loop {
            match decoder.decode(&batch[end..]) {
                Ok(0) => break,
                Ok(read) => end += read,
                Err(e) => return Some(found(line, reader_problem(&e), None)),
            }
            if end == batch.len() {
                // The last record may lack its line end.
                if let Err(e) = decoder.decode(&[]) {
                    return Some(found(line, reader_problem(&e), None));
                }
                break;
            }
        }
        if let Err(e) = decoder.flush() {
            let record = &batch[start..end];
            let (problem, value) = match source.format {
                Format::Csv => csv_value_problem(source, only, record),
                _ => None,
            }
            .unwrap_or_else(|| (reader_problem(&e), None));
            return Some(found(line, problem, value));
        }
        if end == at {
            break;
        }
        at = end;
    }
    None
}

/// Which column of a CSV record (`only`, or the first of all) does not parse as its type,
/// and its text.
fn csv_value_problem(
    source: &TextSource,
    only: Option<usize>,
    record: &[u8],
) -> Option<(String, Option<String>)> {
    let fields = source.schema.fields();
    let text = Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let read = |schema: SchemaRef, column: usize| {
        let mut decoder = arrow::csv::ReaderBuilder::new(schema)
            .with_delimiter(source.delimiter)
            .with_batch_size(1)
            .with_projection(vec![column])
            .build_decoder();
        decoder.decode(record)?;
        decoder.decode(&[])?;
        decoder.flush()
    };
    let columns = match only {
        Some(i) => i..i + 1,
        None => 0..fields.len(),
    };
    columns.into_iter().find_map(|i| {
        read(source.schema.clone(), i).err()?;
        let value = read(text.clone(), i).ok().flatten().map(|batch| {
            arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap_or_default()
        });
        let field = &fields[i];
        let problem = format!(
            "column {:?} ({}): {:?} is not a valid {} (rule: the source's {})",
            field.name(),
            storage::types::type_name(field.data_type()),
            value.clone().unwrap_or_default(),
            storage::types::type_name(field.data_type()),
            match source.declared {
                true => "declared column types",
                false =>
                    "column types, inferred from its first rows: declare its columns to \
                          read them as other types",
            },
        );
        Some((problem, value))
    })
}

/// The reader's message without its own line count, which is relative to where it started.
fn reader_problem(error: &ArrowError) -> String {
    let text = match error {
        ArrowError::CsvError(m) | ArrowError::JsonError(m) | ArrowError::ParseError(m) => m.clone(),
        other => other.to_string(),
    };
    match text.split_once(", expected ") {
        Some((_, counts)) if text.starts_with("incorrect number of fields") => format!(
            "wrong number of fields: expected {}",
            counts.replacen(" got ", ", found ", 1)
        ),
        _ => text,
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

/// What a reader skips before a record: line ends (empty lines) in CSV, where a line of
/// spaces is a record; any whitespace between JSON values.
fn blank_prefix(format: Format, bytes: &[u8]) -> usize {
    let blank = |b: &&u8| match format {
        Format::Csv => matches!(b, b'\n' | b'\r'),
        _ => b.is_ascii_whitespace(),
    };
    bytes.iter().take_while(blank).count()
}

/// Skips a CSV header (its first record: up to the first line end outside quotes), which may
/// span chunks.
struct Header {
    pending: bool,
    quoted: bool,
}

impl Header {
    fn new(pending: bool) -> Self {
        Self {
            pending,
            quoted: false,
        }
    }

    /// The part of `chunk` after the header, counting the header's lines into `line`.
    fn skip<'a>(&mut self, chunk: &'a [u8], line: &mut usize) -> &'a [u8] {
        if !self.pending {
            return chunk;
        }
        for (i, &b) in chunk.iter().enumerate() {
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' => {
                    *line += 1;
                    if !self.quoted {
                        self.pending = false;
                        return &chunk[i + 1..];
                    }
                }
                _ => {}
            }
        }
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(format: Format, columns: &[(&str, DataType)]) -> TextSource {
        TextSource {
            name: "s".into(),
            path: "s".into(),
            format,
            extension: String::new(),
            schema: Arc::new(Schema::new(
                columns
                    .iter()
                    .map(|(n, t)| Field::new(*n, t.clone(), true))
                    .collect::<Vec<_>>(),
            )),
            has_header: true,
            delimiter: b',',
            declared: true,
        }
    }

    /// Finds the bad record of `text` fed in chunks of `size` bytes.
    fn find(source: &TextSource, text: &str, size: usize) -> Option<String> {
        let chunks: Vec<Result<Vec<u8>, DataFusionError>> = text
            .as_bytes()
            .chunks(size)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(find_in_file(source, None, futures::stream::iter(chunks)))
            .unwrap()
            .map(|found| found.message)
    }

    fn csv_rows(n: usize, bad: Option<(usize, &str)>) -> String {
        let mut text = String::from("k,v\n");
        for i in 0..n {
            match bad {
                Some((row, record)) if row == i => text.push_str(record),
                _ => text.push_str(&format!("k{i},{i}.5")),
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn names_the_file_line_of_a_bad_csv_value_in_any_batch_and_chunking() {
        let s = source(
            Format::Csv,
            &[("k", DataType::Utf8), ("v", DataType::Float64)],
        );
        for row in [0, 5, BATCH - 1, BATCH, 3 * BATCH + 17] {
            let text = csv_rows(3 * BATCH + 20, Some((row, "kx,oops")));
            for size in [1, 7, 64 * 1024, text.len()] {
                let found = find(&s, &text, size).unwrap_or_default();
                // The header is line 1 and data row `row` (0-based) is on line row + 2.
                let want = format!(
                    "line {}: column \"v\" (double): \"oops\" is not a valid double",
                    row + 2
                );
                assert!(
                    found.starts_with(&want),
                    "row {row}, chunks of {size}: {found}"
                );
            }
        }
        assert_eq!(find(&s, &csv_rows(100, None), 13), None);
    }

    #[test]
    fn counts_lines_inside_quotes_and_names_a_wrong_field_count() {
        let s = source(
            Format::Csv,
            &[("k", DataType::Utf8), ("v", DataType::Float64)],
        );
        let text = "\"k\nk\",v\n\"a\nb\",1.0\nc,2.0\nd,3.0,4\n";
        for size in [1, 3, text.len()] {
            let found = find(&s, text, size).unwrap_or_default();
            // "found 3", or "found more than 2" when the record outgrows the buffer.
            assert!(
                found.starts_with("line 6: wrong number of fields: expected 2, found "),
                "chunks of {size}: {found}"
            );
        }
    }

    /// A line of spaces or a tab is a CSV record (of one field), named by its own line.
    #[test]
    fn a_line_of_blanks_is_a_record_on_its_own_line() {
        let s = source(
            Format::Csv,
            &[("k", DataType::Utf8), ("v", DataType::Float64)],
        );
        for blank in ["   ", "\t"] {
            let text = format!("k,v\na,1.0\n\n{blank}\nb,2.0\n");
            let found = find(&s, &text, 4).unwrap_or_default();
            assert!(
                found.starts_with("line 4: wrong number of fields"),
                "{blank:?}: {found}"
            );
        }
    }

    /// The engine's reader errors name a column (and a CSV value) or a field count.
    #[test]
    fn clues_from_the_readers_messages() {
        let clue = Clue::from_message(
            "group \"g\": Arrow error: Parser error: Error while parsing value 'x2' as type \
             'Int64' for column 2 at line 3. Row data: '[a,b,x2]'",
        );
        assert_eq!(
            (clue.csv_column, clue.value.as_deref()),
            (Some(2), Some("x2"))
        );
        let clue = Clue::from_message("Error parsing column 1 at line 9: input is out of range");
        assert_eq!((clue.csv_column, clue.value), (Some(1), None));
        let clue = Clue::from_message(
            "Csv error: incorrect number of fields for line 3, expected 3 got 4",
        );
        assert_eq!(clue.fields, Some(3));
        let clue = Clue::from_message("Json error: whilst decoding field 'ts': failed to parse");
        assert_eq!(clue.json_field.as_deref(), Some("ts"));
        assert_eq!(Clue::from_message("something else"), Clue::default());
    }

    #[test]
    fn names_the_line_of_a_bad_json_record() {
        let s = source(
            Format::Jsonl,
            &[("k", DataType::Utf8), ("v", DataType::Float64)],
        );
        let mut text = String::new();
        for i in 0..BATCH + 3 {
            text.push_str(&format!("{{\"k\": \"k{i}\", \"v\": {i}.5}}\n"));
        }
        let good = text.clone();
        text.push_str("\n{\"k\": \"x\", \"v\": \"oops\"}\n");
        for size in [5, text.len()] {
            let found = find(&s, &text, size).unwrap_or_default();
            assert!(
                found.starts_with(&format!("line {}: ", BATCH + 5)),
                "{found}"
            );
        }
        let broken = format!("{good}{{\"k\": nope, \"v\": 1}}\n");
        let found = find(&s, &broken, 11).unwrap_or_default();
        assert!(
            found.starts_with(&format!("line {}: ", BATCH + 4)),
            "{found}"
        );
        assert_eq!(find(&s, &good, 17), None);
    }
}
