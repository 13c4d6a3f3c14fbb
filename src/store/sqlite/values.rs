//! Batches bound as multi-row `VALUES` lists, so SQLite reads plain parameters instead of
//! re-parsing a JSON document once per field.
//!
//! A batch is cut into chunks of at most [`MAX_ROWS`] rows, and each chunk is padded with
//! NULL rows up to the next of a few fixed sizes. The statements therefore come in a handful
//! of shapes that stay prepared in the connection's statement cache. Statements skip the
//! padding rows by their NULL first column.

/// Row counts a statement is written for.
const SHAPES: [usize; 4] = [4, 16, 64, 256];
/// Most rows in one statement (256 rows of 8 columns stay far below SQLite's 32,766
/// parameters).
pub(super) const MAX_ROWS: usize = 256;

/// The statement size for a chunk of `rows` rows (at most [`MAX_ROWS`]).
pub(super) fn shape(rows: usize) -> usize {
    SHAPES
        .into_iter()
        .find(|&size| size >= rows)
        .unwrap_or(MAX_ROWS)
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
        assert_eq!(shape(1), 4);
        assert_eq!(shape(4), 4);
        assert_eq!(shape(5), 16);
        assert_eq!(shape(200), 256);
        assert_eq!(shape(MAX_ROWS), MAX_ROWS);
    }

    #[test]
    fn placeholders_have_one_group_per_row() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
    }
}
