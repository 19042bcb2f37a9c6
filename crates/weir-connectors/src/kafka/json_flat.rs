//! The common JSON record read without serde: one flat object whose keys are the columns'
//! names as they are, and whose values are numbers, strings without escapes, booleans and
//! nulls. The record is checked as UTF-8 once, keys are matched by their bytes (the column
//! after the last one matched first, as records of a topic keep one key order), and values
//! are converted to the columns' types straight from the record's bytes.
//!
//! Anything else (escapes, nested values, keys matching a column only ignoring case,
//! fractions or exponents outside a floating-point column, any error) makes [`scan`] give up
//! without having handed anything on, and the record is read by serde
//! ([`super::json_row::JsonRow`]), which gives the same rows and explains any error.

use crate::column::{int_range, millis_to_unit, ColumnType, Value};
use datafusion_common::arrow::datatypes::DataType;

/// Decode `bytes` into one value per column of `names` (of `types`), and hand them to `take`;
/// `None` when the record needs serde (nothing has been handed on then). `plain[c]`: whether
/// `names[c]` is written in JSON as its bytes are (see [`plain`]).
pub(crate) fn scan(
    bytes: &[u8],
    names: &[String],
    plain: &[bool],
    types: &[ColumnType],
    nullable: &[bool],
    take: &mut dyn FnMut(&[Value]),
) -> Option<()> {
    let text = simdutf8::basic::from_utf8(bytes).ok()?;
    let b = text.as_bytes();
    // the values, on the stack for up to 16 columns (no allocation per record)
    let mut stack: [Value; 16] = std::array::from_fn(|_| Value::Null);
    let mut heap = Vec::new();
    let values: &mut [Value] = match stack.get_mut(..names.len()) {
        Some(values) => values,
        None => {
            heap.resize(names.len(), Value::Null);
            &mut heap
        }
    };
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(b, i + 1);
    // the column the next key most likely names
    let mut guess = 0;
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            // a key
            if b.get(i) != Some(&b'"') {
                return None;
            }
            // the key: most often the name guessed, compared in place without scanning it
            let (column, after) = match names.get(guess) {
                Some(n) if plain[guess] && quoted_at(b, i + 1, n.as_bytes()) => (Some(guess), i + 2 + n.len()),
                _ => {
                    let (key, after) = string(text, i + 1)?;
                    let column = match names.iter().position(|n| same(n, key)) {
                        Some(c) => Some(c),
                        // a key that names a column only ignoring case is serde's to match
                        None if names.iter().any(|n| n.eq_ignore_ascii_case(key)) => return None,
                        None => None,
                    };
                    (column, after)
                }
            };
            i = skip_ws(b, after);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(b, i + 1);
            // the value
            let (value, after) = match b.get(i)? {
                b'"' => {
                    let (s, after) = string(text, i + 1)?;
                    let v = match column {
                        Some(c) => types[c].parse_text(s)?,
                        None => Value::Null,
                    };
                    (v, after)
                }
                b'-' | b'0'..=b'9' => {
                    let end = i + b[i..]
                        .iter()
                        .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .unwrap_or(b.len() - i);
                    let v = match column {
                        Some(c) => number(&types[c], &text[i..end])?,
                        None => Value::Null,
                    };
                    (v, end)
                }
                b't' if b[i..].starts_with(b"true") => (bool_value(column.map(|c| &types[c]), true)?, i + 4),
                b'f' if b[i..].starts_with(b"false") => (bool_value(column.map(|c| &types[c]), false)?, i + 5),
                b'n' if b[i..].starts_with(b"null") => (Value::Null, i + 4),
                // objects, arrays, anything else
                _ => return None,
            };
            if let Some(c) = column {
                values[c] = value;
                guess = c + 1;
            }
            i = skip_ws(b, after);
            match b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    if skip_ws(b, i) != b.len() {
        return None;
    }
    if values.iter().zip(nullable).any(|(v, n)| *v == Value::Null && !n) {
        return None;
    }
    take(values);
    Some(())
}

/// Whether `name` is written in a JSON string as its bytes are (no quote, backslash or control
/// character to escape), so that a key can be matched against it byte for byte.
pub(crate) fn plain(name: &str) -> bool {
    !name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20)
}

/// Whether `b` holds `name` at `at`, followed by a closing quote (for a [`plain`] name, the
/// key `name` exactly: no escape can end before the quote).
fn quoted_at(b: &[u8], at: usize, name: &[u8]) -> bool {
    match b.get(at..at + name.len() + 1) {
        Some(rest) => rest[name.len()] == b'"' && rest.iter().zip(name).all(|(x, y)| x == y),
        None => false,
    }
}

/// `a == b`, for the short strings keys are (no call to `memcmp` for each).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// The string starting at `start` (after its opening quote) and the index after its closing
/// quote; `None` with an escape or a control character in it.
fn string(text: &str, start: usize) -> Option<(&str, usize)> {
    let b = text.as_bytes();
    let end = special(b, start)?;
    if b[end] != b'"' {
        return None;
    }
    Some((text.get(start..end)?, end + 1))
}

/// The index of the first `"`, `\\` or control character at or after `start`: eight bytes at a
/// time (a byte's test sets its high bit; the lowest byte flagged is always a true match).
fn special(b: &[u8], start: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let rest = b.get(start..)?;
    let mut chunks = rest.chunks_exact(8);
    let mut at = start;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let zero = |v: u64| v.wrapping_sub(ONES) & !v;
        let hit = (zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|i| at + i)
}

/// A JSON number's text as a column of type `t` holds it: integers for every type that takes
/// a number, fractions and exponents only for floating point.
fn number<'a>(t: &ColumnType, s: &str) -> Option<Value<'a>> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    // an integer's value, read in one pass (`None`: too large), accumulated negatively so
    // that i64::MIN fits
    let (mut all_digits, mut n) = (!digits.is_empty(), Some(0i64));
    for c in digits.bytes() {
        let d = c.wrapping_sub(b'0');
        all_digits &= d < 10;
        n = n.and_then(|n| n.checked_mul(10)).and_then(|n| n.checked_sub(i64::from(d)));
    }
    let integer = all_digits;
    let value = n.filter(|_| integer).and_then(|n| if negative { Some(n) } else { n.checked_neg() });
    // JSON has no leading zeros
    if digits.len() > 1 && digits.starts_with('0') && integer {
        return None;
    }
    match t.data_type() {
        DataType::Float32 | DataType::Float64 => {
            if !integer && !valid_fraction(digits) {
                return None;
            }
            s.parse::<f64>().ok().filter(|f| f.is_finite()).map(Value::Float)
        }
        _ if !integer => None,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let v = value?;
            let (lo, hi) = int_range(t.data_type());
            (lo..=hi).contains(&v).then_some(Value::Int(v))
        }
        DataType::Timestamp(unit, _) => Some(Value::Int(millis_to_unit(value?, *unit)?)),
        DataType::Boolean => match value? {
            0 => Some(Value::Bool(false)),
            1 => Some(Value::Bool(true)),
            _ => None,
        },
        DataType::Utf8 => Some(Value::Owned(value?.to_string())),
        _ => None,
    }
}

/// `digits` (a number without its sign) as JSON writes a fraction or an exponent.
fn valid_fraction(digits: &str) -> bool {
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(e) => (&digits[..e], Some(&digits[e + 1..])),
        None => (digits, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    all_digits(int)
        && !(int.len() > 1 && int.starts_with('0'))
        && frac.is_none_or(all_digits)
        && exponent.is_none_or(|e| all_digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

fn bool_value<'a>(t: Option<&ColumnType>, b: bool) -> Option<Value<'a>> {
    match t {
        Some(t) => t.parse_json_bool(b),
        None => Some(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::json_row::JsonRow;
    use datafusion_common::arrow::datatypes::TimeUnit;

    fn columns() -> (Vec<String>, Vec<ColumnType>, Vec<bool>) {
        let types = [
            DataType::Int64,
            DataType::Utf8,
            DataType::Float64,
            DataType::Timestamp(TimeUnit::Millisecond, None),
            DataType::Boolean,
            DataType::Int8,
        ];
        let names = ["a", "s", "f", "ts", "b", "small"].iter().map(|n| n.to_string()).collect();
        let types = types.iter().map(|t| ColumnType::new(t).unwrap()).collect();
        (names, types, vec![true, true, true, true, true, true])
    }

    fn fast(record: &str) -> Option<Vec<String>> {
        let (names, types, nullable) = columns();
        let mut out = None;
        let plain: Vec<bool> = names.iter().map(|n| plain(n)).collect();
        scan(record.as_bytes(), &names, &plain, &types, &nullable, &mut |v| {
            out = Some(v.iter().map(|v| format!("{v:?}")).collect())
        })?;
        out
    }

    fn slow(record: &str) -> Result<Vec<String>, String> {
        let (names, types, nullable) = columns();
        let mut out = Vec::new();
        JsonRow::new(&names).decode(record.as_bytes(), &types, &nullable, &mut |v| {
            out = v.iter().map(|v| format!("{v:?}")).collect()
        })?;
        Ok(out)
    }

    #[test]
    fn agrees_with_serde_or_leaves_the_record_to_it() {
        // (record, whether the fast path reads it)
        let records = [
            (r#"{"a":1,"s":"x","f":1.5,"ts":"2015-07-15T00:00:00.001","b":true,"small":-3}"#, true),
            (r#" { "small" : 7 , "a" : -12 , "other" : "y", "s" : "héllo" } "#, true),
            (r#"{"a":null,"s":null,"f":2,"ts":1700000000123,"b":false,"extra":"z"}"#, true),
            (r#"{"f":1e3,"a":9223372036854775807,"b":0}"#, true),
            (r#"{"f":-0.25E-2,"s":12}"#, true),
            (r#"{}"#, true),
            (r#"{"s":"exactly8","a":-9223372036854775808}"#, true),
            (r#"{"s":"sixteen chars ok","small":0}"#, true),
            (r#"{"s":"a longer text with ünïcödé, past a few words"}"#, true),
            (r#"{"s":"a longer text with a quote \" past eight bytes"}"#, false),
            ("{\"s\":\"a longer text with a newline\n past eight bytes\"}", false),
            (r#"{"a":-9223372036854775809}"#, false),
            (r#"{"b":1,"a":2,"a":3}"#, true),
            // keys the name guessed only begins
            (r#"{"a":1,"small":7,"s":"x"}"#, true),
            (r#"{"a":1,"sm":7}"#, true),
            (r#"{"other":[1,{"x":2}],"a":1}"#, false),
            (r#"{"s":{"nested":true}}"#, false),
            (r#"{"extra":"\"quoted\""}"#, false),
            (r#"{"s":"a\"b"}"#, false),
            (r#"{"A":1}"#, false),
            (r#"{"a":1.0}"#, false),
            (r#"{"a":01}"#, false),
            (r#"{"f":.5}"#, false),
            (r#"{"f":1.}"#, false),
            (r#"{"a":9223372036854775808}"#, false),
            (r#"{"small":200}"#, false),
            ("{\"s\":\"tab\tinside\"}", false),
            (r#"{"a":1,}"#, false),
            (r#"{"a":1} x"#, false),
            (r#"{"a" 1}"#, false),
            (r#"[1]"#, false),
            (r#"{"a":tru}"#, false),
            (r#"{"ts":"not a time"}"#, false),
            ("", false),
        ];
        for (r, fast_path) in records {
            let rows = fast(r);
            assert_eq!(rows.is_some(), fast_path, "{r}");
            if let Some(rows) = rows {
                assert_eq!(Ok(rows), slow(r), "{r}");
            }
        }
    }

    #[test]
    fn many_columns() {
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let types: Vec<ColumnType> = names.iter().map(|_| ColumnType::new(&DataType::Int64).unwrap()).collect();
        let nullable = vec![true; 20];
        let record = format!("{{{}}}", (0..20).rev().map(|i| format!(r#""c{i}":{i}"#)).collect::<Vec<_>>().join(","));
        let mut got = Vec::new();
        let plain = vec![true; 20];
        scan(record.as_bytes(), &names, &plain, &types, &nullable, &mut |v| {
            got = v.iter().map(|v| format!("{v:?}")).collect()
        })
        .unwrap();
        assert_eq!(got, (0..20).map(|i| format!("{:?}", Value::Int(i))).collect::<Vec<_>>());
    }

    #[test]
    fn names_written_with_escapes_are_left_to_serde() {
        let names = vec![r#"a"b"#.to_string(), "c".to_string()];
        let plain: Vec<bool> = names.iter().map(|n| plain(n)).collect();
        assert_eq!(plain, [false, true]);
        let types = vec![ColumnType::new(&DataType::Int64).unwrap(); 2];
        let record = br#"{"a\"b":1,"c":2}"#;
        assert!(scan(record, &names, &plain, &types, &[true, true], &mut |_| panic!("handed on")).is_none());
        let mut got = Vec::new();
        JsonRow::new(&names)
            .decode(record, &types, &[true, true], &mut |v| got = v.iter().map(|v| format!("{v:?}")).collect())
            .unwrap();
        assert_eq!(got, [format!("{:?}", Value::Int(1)), format!("{:?}", Value::Int(2))]);
    }

    #[test]
    fn not_null_columns_missing_go_to_serde_for_the_message() {
        let (names, types, _) = columns();
        let nullable = vec![false, true, true, true, true, true];
        let plain = vec![true; names.len()];
        let r = scan(br#"{"s":"x"}"#, &names, &plain, &types, &nullable, &mut |_| panic!("handed on"));
        assert!(r.is_none());
    }
}
