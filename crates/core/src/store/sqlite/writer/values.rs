//! Batches bound as multi-row `VALUES` lists, so SQLite reads plain parameters instead of
//! re-parsing a JSON document once per field.
//!
//! A batch is cut into chunks of at most [`MAX_ROWS`] rows, and each chunk is padded with
//! NULL rows up to the next power of two. A [`Statement`] therefore comes in nine shapes,
//! built once and kept prepared in the connection's statement cache, and at most half of a
//! statement's rows are padding. Statements skip the padding rows by their NULL first column.

use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;

/// Most rows in one statement (256 rows of 11 columns stay far below SQLite's 32,766
/// parameters).
pub(in crate::store::sqlite) const MAX_ROWS: usize = 256;

/// One statement over a `VALUES` list, in each of its shapes.
pub(in crate::store::sqlite) struct Statement {
    columns: usize,
    /// The SQL for 1, 2, 4, ... [`MAX_ROWS`] rows.
    shapes: Vec<String>,
}

impl Statement {
    /// Builds every shape of the statement `sql` makes of a `VALUES` list of rows of `columns`
    /// placeholders each.
    pub(in crate::store::sqlite) fn new(columns: usize, sql: impl Fn(&str) -> String) -> Self {
        let shapes = (0..=MAX_ROWS.trailing_zeros())
            .map(|power| sql(&placeholders(1 << power, columns)))
            .collect();
        Self { columns, shapes }
    }

    /// A statement without a `VALUES` list, the same for every chunk size: its parameters are
    /// bound once, and nothing pads it.
    pub(in crate::store::sqlite) fn fixed(sql: &str) -> Self {
        Self {
            columns: 0,
            shapes: vec![sql.to_owned()],
        }
    }

    /// The SQL for a chunk of `rows` rows (at most [`MAX_ROWS`]).
    pub(in crate::store::sqlite) fn sql(&self, rows: usize) -> &str {
        shape_sql(&self.shapes, rows)
    }

    /// Binds the NULL rows that pad a chunk of `rows` rows to its shape.
    pub(in crate::store::sqlite) fn pad<'q>(
        &self,
        mut query: Query<'q, Sqlite, SqliteArguments>,
        rows: usize,
    ) -> Query<'q, Sqlite, SqliteArguments> {
        for _ in 0..(shape(rows) - rows.min(MAX_ROWS)) * self.columns {
            query = query.bind(None::<&str>);
        }
        query
    }
}

/// Statements that run one after the other in a single round trip to the connection's thread,
/// in each shape. Their parameters are bound in statement order, each statement's rows and
/// padding by its own [`Statement`]; `?` placeholders number on across the statements.
pub(in crate::store::sqlite) struct Sequence {
    shapes: Vec<String>,
}

impl Sequence {
    /// `parts`, in order.
    pub(in crate::store::sqlite) fn new(parts: &[&Statement]) -> Self {
        let shapes = (0..=MAX_ROWS.trailing_zeros() as usize)
            .map(|power| {
                parts
                    .iter()
                    .map(|part| shape_sql(&part.shapes, 1 << power))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .collect();
        Self { shapes }
    }

    /// The SQL for a chunk of `rows` rows (at most [`MAX_ROWS`]).
    pub(in crate::store::sqlite) fn sql(&self, rows: usize) -> &str {
        shape_sql(&self.shapes, rows)
    }
}

/// The shape in `shapes` for a chunk of `rows` rows; a fixed statement's one shape serves
/// every size.
fn shape_sql(shapes: &[String], rows: usize) -> &str {
    let power = shape(rows).trailing_zeros() as usize;
    shapes
        .get(power)
        .or(shapes.last())
        .map_or("", String::as_str)
}

/// The statement size for a chunk of `rows` rows (at most [`MAX_ROWS`]).
fn shape(rows: usize) -> usize {
    rows.next_power_of_two().min(MAX_ROWS)
}

/// `rows` parenthesised groups of `columns` placeholders: `(?, ?), (?, ?)`.
fn placeholders(rows: usize, columns: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(", "));
    vec![group; rows].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_padded_to_a_few_shapes() {
        assert_eq!(shape(1), 1);
        assert_eq!(shape(4), 4);
        assert_eq!(shape(5), 8);
        assert_eq!(shape(80), 128);
        assert_eq!(shape(200), 256);
        assert_eq!(shape(MAX_ROWS), MAX_ROWS);
    }

    #[test]
    fn placeholders_have_one_group_per_row() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }

    #[test]
    fn a_statement_has_one_shape_per_power_of_two() {
        let statement = Statement::new(2, |values| format!("VALUES {values}"));
        assert_eq!(statement.sql(1), "VALUES (?, ?)");
        assert_eq!(statement.sql(3), statement.sql(4));
        assert_eq!(statement.sql(3).matches('(').count(), 4);
        assert_eq!(statement.sql(MAX_ROWS).matches('(').count(), MAX_ROWS);
    }

    #[test]
    fn a_sequence_joins_its_statements_shape_by_shape() {
        let fixed = Statement::fixed("UPDATE t SET a = ?");
        let rows = Statement::new(1, |values| format!("INSERT INTO t VALUES {values}"));
        let sequence = Sequence::new(&[&fixed, &rows]);
        assert_eq!(
            sequence.sql(2),
            "UPDATE t SET a = ?; INSERT INTO t VALUES (?), (?)"
        );
        assert_eq!(sequence.sql(3), sequence.sql(4));
    }
}
