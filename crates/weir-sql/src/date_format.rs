//! Flink's `DATE_FORMAT(timestamp, pattern)`, whose pattern is Java's `DateTimeFormatter`'s
//! (`'yyyy-MM-dd HH:mm'`).
//! DataFusion's `date_format` is an alias of `to_char`, which takes a strftime format
//! (`'%Y-%m-%d %H:%M'`) and copies a Java pattern through as literal text: a Flink query would
//! print `yyyy-MM-dd` on every row. weir's `date_format` translates the pattern and runs
//! DataFusion's `to_char` with it; a pattern it cannot translate is refused when the query is
//! planned (a literal pattern) or run (one from a column), never printed as text. `to_char`
//! keeps strftime formats. A column of timestamps without a time zone is formatted here, the
//! format parsed once per batch (`to_char` parses it again for every row: a quarter of Nexmark
//! q17's time); anything else goes to `to_char`.
//!
//! ```text
//!   yyyy yy  uuuu uu  MM M MMM MMMM  dd d  HH H  hh h  mm m  ss s  SSS SSSSSS SSSSSSSSS  a   EEE EEEE  DDD D
//!   %Y   %y  %Y   %y  %m %-m %b %B   %d %-d %H %-H %I %-I %M %-M %S %-S %3f %6f %9f    %p  %a  %A    %j %-j
//!   'text' literal, '' a quote, any other character but [ ] { } # as itself
//! ```

use std::fmt::Write;
use std::sync::Arc;

use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use datafusion_common::arrow::array::temporal_conversions::as_datetime;
use datafusion_common::arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use datafusion_common::arrow::datatypes::{
    ArrowTimestampType, DataType, FieldRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use datafusion_common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// `date_format` with Flink's (Java's) patterns, around DataFusion's `to_char`.
pub fn date_format() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(DateFormat { to_char: datafusion_functions::datetime::to_char() }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    to_char: Arc<ScalarUDF>,
}

/// The strftime format of a Java date pattern, or why there is none.
pub fn strftime_of(pattern: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // quoted text; '' is a quote, inside or outside
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("the pattern '{pattern}' has a quote that is not closed")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        out.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(c) => {
                        push_literal(&mut out, *c);
                        i += 1;
                    }
                }
            }
            continue;
        }
        if matches!(c, '[' | ']' | '{' | '}' | '#') {
            return Err(format!(
                "'{c}' in '{pattern}' is reserved in Java's date patterns (optional sections are not supported); quote it \
                 ('{c}') to print it"
            ));
        }
        if !c.is_ascii_alphabetic() {
            push_literal(&mut out, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|d| **d == c).count();
        let field = match (c, run) {
            ('y' | 'u', 2) => "%y",
            ('y' | 'u', 1 | 3 | 4) => "%Y",
            ('M', 1) => "%-m",
            ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('M', 4) => "%B",
            ('d', 1) => "%-d",
            ('d', 2) => "%d",
            ('H', 1) => "%-H",
            ('H', 2) => "%H",
            ('h', 1) => "%-I",
            ('h', 2) => "%I",
            ('m', 1) => "%-M",
            ('m', 2) => "%M",
            ('s', 1) => "%-S",
            ('s', 2) => "%S",
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('a', 1) => "%p",
            ('E', 1..=3) => "%a",
            ('E', 4) => "%A",
            ('D', 1) => "%-j",
            ('D', 3) => "%j",
            _ => {
                let letters: String = std::iter::repeat_n(c, run).collect();
                return Err(format!(
                    "the pattern letters '{letters}' in '{pattern}' are not supported (supported: yyyy yy MM M MMM MMMM \
                     uuuu uu dd d HH H hh h mm m ss s SSS SSSSSS SSSSSSSSS a E EEEE D DDD); quote literal text ('T'), or \
                     write to_char(ts, '<strftime format>')"
                ));
            }
        };
        out.push_str(field);
        i += run;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// The pattern argument with every pattern translated.
fn translated(pattern: &ColumnarValue) -> Result<ColumnarValue> {
    let one = |p: &str| strftime_of(p).map_err(|e| DataFusionError::Execution(format!("date_format: {e}")));
    Ok(match pattern {
        ColumnarValue::Scalar(ScalarValue::Utf8(p) | ScalarValue::LargeUtf8(p) | ScalarValue::Utf8View(p)) => {
            ColumnarValue::Scalar(ScalarValue::Utf8(p.as_deref().map(one).transpose()?))
        }
        ColumnarValue::Scalar(other) => {
            return exec_err!("date_format: the pattern is {}, not a string", other.data_type())
        }
        ColumnarValue::Array(a) => {
            let a = datafusion_common::arrow::compute::cast(a, &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            let values = (0..a.len()).map(|i| a.is_valid(i).then(|| one(a.value(i))).transpose());
            ColumnarValue::Array(Arc::new(values.collect::<Result<StringArray>>()?))
        }
    })
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        self.to_char.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.to_char.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // a literal pattern is checked when the query is planned
        if let Some(Some(
            ScalarValue::Utf8(Some(p)) | ScalarValue::Utf8View(Some(p)) | ScalarValue::LargeUtf8(Some(p)),
        )) = args.scalar_arguments.get(1)
        {
            if let Err(e) = strftime_of(p) {
                return plan_err!("date_format: {e}");
            }
        }
        self.to_char.return_field_from_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        None
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(pattern) = args.args.get_mut(1) {
            *pattern = translated(pattern)?;
        }
        if let [ColumnarValue::Array(times), ColumnarValue::Scalar(ScalarValue::Utf8(Some(format)))] = &args.args[..] {
            if let Some(out) = format_timestamps(times, format) {
                return Ok(ColumnarValue::Array(out));
            }
        }
        self.to_char.invoke_with_args(args)
    }
}

/// `times` formatted with strftime `format` as `to_char` formats them, when they are
/// timestamps without a time zone; `None` otherwise, or when chrono cannot parse the format or
/// a time is out of its range (`to_char` then says why).
fn format_timestamps(times: &ArrayRef, format: &str) -> Option<ArrayRef> {
    let DataType::Timestamp(unit, None) = times.data_type() else { return None };
    let items = StrftimeItems::new(format).parse().ok()?;
    Some(match unit {
        TimeUnit::Second => format_with::<TimestampSecondType>(times.as_ref(), &items, format.len())?,
        TimeUnit::Millisecond => format_with::<TimestampMillisecondType>(times.as_ref(), &items, format.len())?,
        TimeUnit::Microsecond => format_with::<TimestampMicrosecondType>(times.as_ref(), &items, format.len())?,
        TimeUnit::Nanosecond => format_with::<TimestampNanosecondType>(times.as_ref(), &items, format.len())?,
    })
}

/// How long, in nanoseconds, a time's text in `items` stays the same: a day when they print
/// the date only, an hour, a minute or a second (times are aligned to it: no time zone, no
/// leap seconds); `None` when they print fractions of a second or anything else.
fn granularity(items: &[Item<'_>]) -> Option<i64> {
    const SECOND: i64 = 1_000_000_000;
    let mut finest = 86_400 * SECOND;
    for item in items {
        let lasts = match item {
            Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => continue,
            Item::Numeric(n, _) => match n {
                Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Quarter
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal => 86_400 * SECOND,
                Numeric::Hour | Numeric::Hour12 => 3_600 * SECOND,
                Numeric::Minute => 60 * SECOND,
                Numeric::Second | Numeric::Timestamp => SECOND,
                _ => return None,
            },
            Item::Fixed(
                Fixed::ShortMonthName | Fixed::LongMonthName | Fixed::ShortWeekdayName | Fixed::LongWeekdayName,
            ) => 86_400 * SECOND,
            Item::Fixed(Fixed::LowerAmPm | Fixed::UpperAmPm) => 3_600 * SECOND,
            _ => return None,
        };
        finest = finest.min(lasts);
    }
    Some(finest)
}

fn format_with<T: ArrowTimestampType>(times: &dyn Array, items: &[Item<'_>], width: usize) -> Option<ArrayRef> {
    let times = times.as_primitive::<T>();
    let unit = match T::UNIT {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    // times in the same day (minute, …) as the row before print the same text, copied: event
    // times come about in order
    let period = granularity(items).map(|g| g / unit);
    // the period of the row before, and its text
    let (mut last, mut text) = (None, String::new());
    // (each value written straight into the builder's buffer, then committed as one)
    let mut out = StringBuilder::with_capacity(times.len(), times.len() * (width + 10));
    for (i, t) in times.values().iter().enumerate() {
        if times.is_null(i) {
            out.append_null();
            continue;
        }
        let Some(period) = period else {
            let time = as_datetime::<T>(*t)?;
            write!(out, "{}", time.format_with_items(items.iter())).ok()?;
            out.append_value("");
            continue;
        };
        let at = t.div_euclid(period);
        if last != Some(at) {
            let time = as_datetime::<T>(*t)?;
            text.clear();
            write!(text, "{}", time.format_with_items(items.iter())).ok()?;
            last = Some(at);
        }
        out.append_value(&text);
    }
    Some(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns_become_strftime_formats() {
        assert_eq!(strftime_of("yyyy-MM-dd HH:mm:ss.SSS").unwrap(), "%Y-%m-%d %H:%M:%S.%3f");
        assert_eq!(strftime_of("yy/M/d h:m:s a").unwrap(), "%y/%-m/%-d %-I:%-M:%-S %p");
        assert_eq!(strftime_of("EEE, d MMM yyyy").unwrap(), "%a, %-d %b %Y");
        assert_eq!(strftime_of("EEEE MMMM DDD uuuu uu D").unwrap(), "%A %B %j %Y %y %-j");
        // as Java's DateTimeFormatter (Flink's): u is the year; DD pads to two digits, which
        // strftime cannot say; a zone needs a zoned timestamp; [ ] are optional sections
        assert!(strftime_of("DD").is_err());
        assert!(strftime_of("Z").is_err());
        assert!(strftime_of("yyyy[-MM]").unwrap_err().contains("reserved"));
        assert!(strftime_of("MMMMM").is_err());
        assert_eq!(strftime_of("yyyy-MM-dd'T'HH 'o''clock' 100%").unwrap(), "%Y-%m-%dT%H o'clock 100%%");
        assert_eq!(strftime_of("''").unwrap(), "'");
        assert!(strftime_of("ww").unwrap_err().contains("'ww'"));
        assert!(strftime_of("yyyyy").is_err());
        assert!(strftime_of("SS").is_err());
        assert!(strftime_of("'open").unwrap_err().contains("not closed"));
    }

    /// `f` of the timestamps `times` formatted with `pattern` (a Java pattern for
    /// `date_format`, a strftime format for `to_char`).
    fn call(f: &ScalarUDF, times: &ArrayRef, pattern: &str) -> Result<StringArray> {
        use datafusion_common::arrow::datatypes::Field;
        let args = vec![
            ColumnarValue::Array(Arc::clone(times)),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(pattern.to_string()))),
        ];
        let arg_fields = vec![
            Arc::new(Field::new("t", times.data_type().clone(), true)),
            Arc::new(Field::new("p", DataType::Utf8, true)),
        ];
        let return_field = Arc::new(Field::new("out", DataType::Utf8, true));
        let config_options = Arc::new(datafusion_common::config::ConfigOptions::default());
        let out = f.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: times.len(),
            return_field,
            config_options,
        })?;
        Ok(out.into_array(times.len())?.as_string::<i32>().clone())
    }

    #[test]
    fn timestamps_formatted_here_read_as_to_char_formats_them() -> Result<()> {
        use datafusion_common::arrow::array::{
            TimestampMicrosecondArray, TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
        };
        // before and after 1970, a leap day, with NULLs
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let nanos: Vec<Option<i64>> = (0..400)
            .map(|i| match i % 9 {
                0 => None,
                1 => Some(951_782_400_000_000_000 + (i as i64) * 3_600_000_000_000), // 2000-02-29
                _ => Some((next() % 8_000_000_000_000_000_000) as i64 - 4_000_000_000_000_000_000),
            })
            // and times close together, in order, across minutes, hours and midnight, before
            // and after 1970 (a text is reused within its day, minute, …)
            .chain((0..600).map(|i| Some(-3 * 86_400_000_000_000 - 5_000_000_000 + i * 7_919_000_123)))
            .chain((0..600).map(|i| Some(1_700_006_400_000_000_000 - 3_600_000_000_000 + i * 13_000_456_789)))
            .collect();
        let by = |d: i64| nanos.iter().map(|n| n.map(|v| v.div_euclid(d))).collect::<Vec<_>>();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampSecondArray::from(by(1_000_000_000))),
            Arc::new(TimestampMillisecondArray::from(by(1_000_000))),
            Arc::new(TimestampMicrosecondArray::from(by(1_000))),
            Arc::new(TimestampNanosecondArray::from(nanos.clone())),
        ];
        let patterns = [
            "yyyy-MM-dd",
            "HH:mm",
            "yyyy-MM-dd HH:mm:ss.SSS",
            "yy/M/d h:m:s a",
            "EEE, d MMM yyyy",
            "EEEE MMMM DDD uuuu uu D",
            "SSSSSS SSSSSSSSS 'at' H 'o''clock' 100%",
        ];
        let to_char = datafusion_functions::datetime::to_char();
        for times in &arrays {
            for pattern in patterns {
                let format = strftime_of(pattern).map_err(DataFusionError::Plan)?;
                assert!(format_timestamps(times, &format).is_some(), "formatted here");
                let ours = call(&date_format(), times, pattern)?;
                let theirs = call(&to_char, times, &format)?;
                assert_eq!(ours, theirs, "{pattern} over {}", times.data_type());
                assert_eq!(ours.null_count(), nanos.iter().filter(|n| n.is_none()).count());
            }
        }
        Ok(())
    }
}
