//! Flink's `DATE_FORMAT(timestamp, pattern)`, whose pattern is Java's `DateTimeFormatter`'s
//! (`'yyyy-MM-dd HH:mm'`).
//! DataFusion's `date_format` is an alias of `to_char`, which takes a strftime format
//! (`'%Y-%m-%d %H:%M'`) and copies a Java pattern through as literal text: a Flink query would
//! print `yyyy-MM-dd` on every row. weir's `date_format` translates the pattern and runs
//! DataFusion's `to_char` with it; a pattern it cannot translate is refused when the query is
//! planned (a literal pattern) or run (one from a column), never printed as text. `to_char`
//! keeps strftime formats.
//!
//! ```text
//!   yyyy yy  uuuu uu  MM M MMM MMMM  dd d  HH H  hh h  mm m  ss s  SSS SSSSSS SSSSSSSSS  a   EEE EEEE  DDD D
//!   %Y   %y  %Y   %y  %m %-m %b %B   %d %-d %H %-H %I %-I %M %-M %S %-S %3f %6f %9f    %p  %a  %A    %j %-j
//!   'text' literal, '' a quote, any other character but [ ] { } # as itself
//! ```

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, AsArray, StringArray};
use datafusion_common::arrow::datatypes::{DataType, FieldRef};
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
        self.to_char.invoke_with_args(args)
    }
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
}
