//! A writer for the crash test: commits to one table in a loop until it is killed.
//!
//! Every commit writes `ROWS` rows that share one `tag`, spread over several data files, so a
//! reader can tell a whole commit from a partial one. Operations cycle through overwrite,
//! append and range replace.

use std::sync::Arc;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use storage::{
    ColumnDef, CommitRequest, Name, NameKind, Operation, Store, TableDefinition, TableWriter,
};

/// Rows per commit.
pub const ROWS: usize = 3000;
const DAY_US: i64 = 86_400_000_000;

fn definition() -> TableDefinition {
    let col = |name: &str, t: &str| ColumnDef {
        name: name.into(),
        data_type: t.into(),
        nullable: false,
        description: String::new(),
    };
    TableDefinition {
        name: Name::new(NameKind::FeatureGroup, "crash").expect("valid name"),
        entity_keys: vec!["key".into()],
        event_time: "ts".into(),
        columns: vec![
            col("key", "string"),
            col("ts", "timestamp[us]"),
            col("tag", "string"),
            col("value", "double"),
        ],
        description: String::new(),
        owner: String::new(),
        tags: Default::default(),
    }
}

fn batch(tag: &str, day: i64, offset: usize, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        ),
        Field::new("tag", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                (offset..offset + rows).map(|i| format!("k{i}")),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..rows).map(|i| day * DAY_US + i as i64),
            )),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                tag, rows,
            ))),
            Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
        ],
    )
    .expect("valid batch")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .ok_or("usage: crash-writer STORE_URL")?;
    let store = Store::open(&url).await?;
    let def = definition();
    for i in 0u64.. {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let day = (i % 5) as i64;
        let operation = match i % 3 {
            0 => Operation::Overwrite,
            1 => Operation::Append,
            _ => Operation::ReplaceRange {
                from_us: day * DAY_US,
                to_us: (day + 1) * DAY_US,
            },
        };
        let mut writer = TableWriter::new(&store, &def)?.with_rows_per_file(1000);
        for part in 0..3 {
            writer
                .write(&batch(&tag, day, part * 1000, ROWS / 3))
                .await?;
        }
        let files = writer.finish().await?;
        let mut request = CommitRequest::new(def.clone(), operation);
        request.metadata.insert("tag".into(), tag.clone().into());
        store.commit_table(&request, files).await?;
    }
    Ok(())
}
