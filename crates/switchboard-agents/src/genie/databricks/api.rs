//! The Genie Conversation API's wire shapes, as far as this client reads them, and how a
//! completed message becomes an answer: which attachment carries the query, which texts still
//! stand, and the Statement Execution response as a capped table.

use crate::sql::QueryResult;
use serde::Deserialize;
use serde_json::Value;

/// Statuses after which a message no longer changes.
pub const TERMINAL: [&str; 4] = ["COMPLETED", "FAILED", "CANCELLED", "QUERY_RESULT_EXPIRED"];

/// The reply to `start-conversation`.
#[derive(Debug, Deserialize)]
pub struct Started {
    /// The new conversation.
    pub conversation_id: String,
    /// The first message in it.
    pub message_id: String,
}

/// A `GenieMessage`: the reply to a follow-up `POST` and to each poll.
#[derive(Debug, Deserialize)]
pub struct GenieMessage {
    /// The message id.
    #[serde(default)]
    pub message_id: Option<String>,
    /// The message id in older replies (newer ones send both).
    #[serde(default)]
    pub id: Option<String>,
    /// Where the message is in its life; unknown values are tolerated as "not yet terminal".
    #[serde(default)]
    pub status: String,
    /// Genie's response, once there is one.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// Why the message failed.
    #[serde(default)]
    pub error: Option<MessageError>,
}

impl GenieMessage {
    /// The message id, from whichever field carries it.
    pub fn id(&self) -> Option<&str> {
        self.message_id.as_deref().or(self.id.as_deref()).filter(|id| !id.is_empty())
    }
}

/// A `GenieAttachment`: exactly one of text or query (others, like suggested questions, are
/// ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Attachment {
    /// The attachment's id, for `query-result` and `execute-query`.
    #[serde(default)]
    pub attachment_id: Option<String>,
    /// A text payload.
    #[serde(default)]
    pub text: Option<TextAttachment>,
    /// A query payload.
    #[serde(default)]
    pub query: Option<QueryAttachment>,
}

/// Text Genie wrote: an explanation, or a clarifying question.
#[derive(Debug, Clone, Deserialize)]
pub struct TextAttachment {
    /// The text.
    #[serde(default)]
    pub content: String,
}

/// A query Genie wrote and ran.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryAttachment {
    /// The SQL.
    #[serde(default)]
    pub query: String,
    /// A short title.
    #[serde(default)]
    pub title: Option<String>,
    /// Genie's reading of the question.
    #[serde(default)]
    pub description: Option<String>,
}

/// A failed message's error.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageError {
    /// The explanation.
    #[serde(default)]
    pub error: Option<String>,
    /// A `MessageErrorType`, e.g. `SQL_EXECUTION_EXCEPTION`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// What a completed message answers.
#[derive(Debug, PartialEq)]
pub enum Reading {
    /// A query (the last one, when Genie corrected itself) and the texts that still stand.
    Query {
        /// The attachment to read the result of.
        attachment_id: String,
        /// The SQL.
        sql: String,
        /// The title, when Genie gave one.
        title: Option<String>,
        /// Explanations: the query's description and texts not superseded by a later query.
        notes: Vec<String>,
    },
    /// Only text: Genie asks for clarification (or answers in words).
    Text(String),
    /// Nothing usable.
    Empty,
}

/// Reads a completed message's attachments. When Genie self-corrects it emits several query
/// attachments: the last one wins, and texts between the first and the last query belong to
/// superseded attempts.
pub fn read(attachments: &[Attachment]) -> Reading {
    let queries: Vec<usize> =
        attachments.iter().enumerate().filter(|(_, a)| a.query.is_some()).map(|(i, _)| i).collect();
    let text_of =
        |a: &Attachment| a.text.as_ref().map(|t| t.content.trim().to_string()).filter(|t| !t.is_empty());
    let (Some(&first), Some(&last)) = (queries.first(), queries.last()) else {
        let texts: Vec<String> = attachments.iter().filter_map(text_of).collect();
        return if texts.is_empty() { Reading::Empty } else { Reading::Text(texts.join("\n\n")) };
    };
    let winner = &attachments[last];
    let Some(query) = &winner.query else { return Reading::Empty };
    let mut notes: Vec<String> =
        query.description.iter().map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect();
    notes.extend(attachments[..first].iter().chain(&attachments[last + 1..]).filter_map(text_of));
    Reading::Query {
        attachment_id: winner.attachment_id.clone().unwrap_or_default(),
        sql: query.query.clone(),
        title: query.title.clone().filter(|t| !t.trim().is_empty()),
        notes,
    }
}

/// `{statement_response: StatementResponse}`, the body of `query-result` and `execute-query`.
#[derive(Debug, Deserialize)]
pub struct StatementEnvelope {
    /// The statement.
    pub statement_response: Statement,
}

/// A Statement Execution `StatementResponse`.
#[derive(Debug, Deserialize)]
pub struct Statement {
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELED` or `CLOSED`.
    #[serde(default)]
    pub status: Option<StatementStatus>,
    /// Columns and counts.
    #[serde(default)]
    pub manifest: Option<Manifest>,
    /// The first chunk of rows.
    #[serde(default)]
    pub result: Option<ResultData>,
}

/// A statement's state.
#[derive(Debug, Deserialize)]
pub struct StatementStatus {
    /// The state.
    #[serde(default)]
    pub state: String,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<StatementError>,
}

/// A statement's error.
#[derive(Debug, Deserialize)]
pub struct StatementError {
    /// The explanation.
    #[serde(default)]
    pub message: Option<String>,
}

/// A statement's manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// The result schema.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// Rows in the whole result.
    #[serde(default)]
    pub total_row_count: Option<u64>,
    /// Whether the warehouse cut the result short.
    #[serde(default)]
    pub truncated: Option<bool>,
}

/// A result schema.
#[derive(Debug, Deserialize)]
pub struct Schema {
    /// The columns.
    #[serde(default)]
    pub columns: Vec<Column>,
}

/// A result column.
#[derive(Debug, Deserialize)]
pub struct Column {
    /// The name.
    pub name: String,
    /// The SQL type, e.g. `STRING`, `LONG`, `DECIMAL`.
    #[serde(default)]
    pub type_name: Option<String>,
}

/// A chunk of rows.
#[derive(Debug, Deserialize)]
pub struct ResultData {
    /// Rows of strings or `null`s (the `JSON_ARRAY` format).
    #[serde(default)]
    pub data_array: Option<Vec<Vec<Option<String>>>>,
}

impl Statement {
    /// The state, upper-cased; empty when the response has none.
    pub fn state(&self) -> String {
        self.status.as_ref().map(|s| s.state.to_ascii_uppercase()).unwrap_or_default()
    }

    /// The failure message, when the statement failed.
    pub fn error_message(&self) -> Option<String> {
        self.status.as_ref()?.error.as_ref()?.message.clone()
    }

    /// The rows as a table of at most `max_rows` rows; values are typed by their column's type.
    pub fn table(&self, max_rows: usize) -> QueryResult {
        let columns: &[Column] = self
            .manifest
            .as_ref()
            .and_then(|m| m.schema.as_ref())
            .map(|s| s.columns.as_slice())
            .unwrap_or(&[]);
        let data = self.result.as_ref().and_then(|r| r.data_array.as_deref()).unwrap_or(&[]);
        let total_rows = self
            .manifest
            .as_ref()
            .and_then(|m| m.total_row_count)
            .unwrap_or(data.len() as u64)
            .max(data.len() as u64);
        let rows: Vec<Vec<Value>> = data
            .iter()
            .take(max_rows)
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        typed(cell.as_deref(), columns.get(i).and_then(|c| c.type_name.as_deref()))
                    })
                    .collect()
            })
            .collect();
        let cut_by_warehouse = self.manifest.as_ref().and_then(|m| m.truncated).unwrap_or(false);
        QueryResult {
            columns: columns.iter().map(|c| c.name.clone()).collect(),
            truncated: cut_by_warehouse || (rows.len() as u64) < total_rows,
            rows,
            total_rows,
        }
    }
}

/// A `JSON_ARRAY` cell as JSON of its column's type; text when it does not parse as that type.
fn typed(cell: Option<&str>, type_name: Option<&str>) -> Value {
    let Some(cell) = cell else { return Value::Null };
    let ty = type_name.unwrap_or("STRING").to_ascii_uppercase();
    let parsed = match ty.as_str() {
        "BYTE" | "SHORT" | "INT" | "LONG" | "BIGINT" | "INTEGER" | "SMALLINT" | "TINYINT" => {
            cell.parse::<i64>().ok().map(Value::from)
        }
        "FLOAT" | "DOUBLE" | "DECIMAL" => {
            cell.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number)
        }
        "BOOLEAN" => cell.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    };
    parsed.unwrap_or_else(|| Value::String(cell.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attachments(value: Value) -> Vec<Attachment> {
        serde_json::from_value(value).expect("attachments")
    }

    #[test]
    fn the_last_query_wins_and_superseded_text_is_dropped() {
        let reading = read(&attachments(json!([
            {"attachment_id": "t0", "text": {"content": "Looking at deals."}},
            {"attachment_id": "q1", "query": {"query": "SELECT bad", "title": "First try"}},
            {"attachment_id": "t2", "text": {"content": "That failed; retrying."}},
            {"attachment_id": "q3", "query": {"query": "SELECT good", "title": "Deals", "description": "Deals by region"}},
            {"attachment_id": "t4", "text": {"content": "West leads."}}
        ])));
        assert_eq!(
            reading,
            Reading::Query {
                attachment_id: "q3".into(),
                sql: "SELECT good".into(),
                title: Some("Deals".into()),
                notes: vec!["Deals by region".into(), "Looking at deals.".into(), "West leads.".into()],
            }
        );
    }

    #[test]
    fn text_alone_is_a_clarification_and_nothing_is_empty() {
        let reading = read(&attachments(json!([{"text": {"content": "Which quarter do you mean?"}}])));
        assert_eq!(reading, Reading::Text("Which quarter do you mean?".into()));
        assert_eq!(
            read(&attachments(json!([{"suggested_questions": {"questions": ["x"]}}]))),
            Reading::Empty
        );
    }

    #[test]
    fn statement_rows_are_typed_and_capped() {
        let statement: StatementEnvelope = serde_json::from_value(json!({"statement_response": {
            "status": {"state": "SUCCEEDED"},
            "manifest": {"schema": {"columns": [
                {"name": "region", "type_name": "STRING"},
                {"name": "amount", "type_name": "LONG"},
                {"name": "margin", "type_name": "DECIMAL"}
            ]}, "total_row_count": 3},
            "result": {"data_array": [["West", "10", "0.25"], ["East", "oops", null], ["North", "3", "1"]]}
        }}))
        .expect("statement");
        let table = statement.statement_response.table(2);
        assert_eq!(table.columns, ["region", "amount", "margin"]);
        assert_eq!(
            table.rows,
            vec![
                vec![json!("West"), json!(10), json!(0.25)],
                vec![json!("East"), json!("oops"), Value::Null]
            ]
        );
        assert!(table.truncated);
        assert_eq!(table.total_rows, 3);
    }
}
