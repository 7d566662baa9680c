//! Rows of a samples table in PostgreSQL's binary COPY format: the server takes each field as
//! its type's binary form (no text parsing, no float formatting on either side).
//!
//! The format (PostgreSQL docs, "COPY", Binary Format): an 11-byte signature, a 32-bit flags
//! field and a 32-bit header-extension length; then per row a 16-bit field count and per
//! field a 32-bit length and the bytes, all in network byte order; a 16-bit -1 ends the data.

/// How wide a column is on the server: binary COPY sends exactly its type's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int {
    I4,
    I8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    F4,
    F8,
}

impl Int {
    /// From a column's type as `format_type` writes it.
    pub fn of(type_name: &str) -> Option<Int> {
        match type_name {
            "integer" => Some(Int::I4),
            "bigint" => Some(Int::I8),
            _ => None,
        }
    }
}

impl Float {
    pub fn of(type_name: &str) -> Option<Float> {
        match type_name {
            "real" => Some(Float::F4),
            "double precision" => Some(Float::F8),
            _ => None,
        }
    }
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A value too large for an `integer` column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value} does not fit an integer column")]
pub struct OutOfRange {
    pub what: &'static str,
    pub value: i64,
}

/// Writes (label_id, time, value) rows into a buffer the caller sends in pieces.
#[derive(Debug)]
pub struct SampleRows {
    pub label: Int,
    pub time: Int,
    pub value: Float,
    buf: Vec<u8>,
}

impl SampleRows {
    /// Starts with the header: the first piece sent begins with it.
    pub fn new(label: Int, time: Int, value: Float) -> SampleRows {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        SampleRows {
            label,
            time,
            value,
            buf,
        }
    }

    fn int(&mut self, width: Int, what: &'static str, v: i64) -> Result<(), OutOfRange> {
        match width {
            Int::I4 => {
                let v = i32::try_from(v).map_err(|_| OutOfRange { what, value: v })?;
                self.buf.extend_from_slice(&4i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            Int::I8 => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
        }
        Ok(())
    }

    pub fn push(&mut self, label_id: i64, time: i64, value: f64) -> Result<(), OutOfRange> {
        let mark = self.buf.len();
        self.buf.extend_from_slice(&3i16.to_be_bytes());
        let ints = self
            .int(self.label, "label id", label_id)
            .and_then(|_| self.int(self.time, "time", time));
        if let Err(e) = ints {
            self.buf.truncate(mark);
            return Err(e);
        }
        match self.value {
            Float::F4 => {
                self.buf.extend_from_slice(&4i32.to_be_bytes());
                self.buf.extend_from_slice(&(value as f32).to_be_bytes());
            }
            Float::F8 => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&value.to_be_bytes());
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// What was written since the last take.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20))
    }

    /// The trailer, after the last row.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rows_and_trailer_as_the_format_says() {
        let mut rows = SampleRows::new(Int::I8, Int::I4, Float::F8);
        rows.push(7, 1_700_000_000, 1.5).unwrap();
        let bytes = rows.finish();
        let mut want = b"PGCOPY\n\xff\r\n\0".to_vec();
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0, 0, 0, 4]);
        want.extend_from_slice(&1_700_000_000i32.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0, 8]);
        want.extend_from_slice(&1.5f64.to_be_bytes());
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_value_too_wide_is_refused_and_leaves_no_half_row() {
        let mut rows = SampleRows::new(Int::I4, Int::I4, Float::F4);
        let before = rows.len();
        assert_eq!(
            rows.push(1, 5_000_000_000, 0.0),
            Err(OutOfRange {
                what: "time",
                value: 5_000_000_000
            })
        );
        assert_eq!(rows.len(), before);
        rows.push(1, 2, f64::NAN).unwrap();
        assert_eq!(rows.len(), before + 2 + 8 + 8 + 8);
    }

    #[test]
    fn types_by_their_sql_names() {
        assert_eq!(Int::of("bigint"), Some(Int::I8));
        assert_eq!(Int::of("integer"), Some(Int::I4));
        assert_eq!(Int::of("numeric"), None);
        assert_eq!(Float::of("real"), Some(Float::F4));
        assert_eq!(Float::of("double precision"), Some(Float::F8));
    }
}
