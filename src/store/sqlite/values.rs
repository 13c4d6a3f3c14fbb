//! Batches bound as multi-row `VALUES` lists, so SQLite reads plain parameters instead of
//! re-parsing a JSON document once per field.
//!
//! A batch is cut into chunks of at most [`MAX_ROWS`] rows, and each chunk is padded with
//! NULL rows up to the next power of two. The statements therefore come in nine shapes that
//! stay prepared in the connection's statement cache, and at most half of a statement's rows
//! are padding. Statements skip the padding rows by their NULL first column.

/// Most rows in one statement (256 rows of 8 columns stay far below SQLite's 32,766
/// parameters).
pub(super) const MAX_ROWS: usize = 256;

/// The statement size for a chunk of `rows` rows (at most [`MAX_ROWS`]).
pub(super) fn shape(rows: usize) -> usize {
    rows.next_power_of_two().min(MAX_ROWS)
}

/// `rows` parenthesised groups of `columns` placeholders: `(?, ?), (?, ?)`.
pub(super) fn placeholders(rows: usize, columns: usize) -> String {
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
}
