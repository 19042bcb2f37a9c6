//! String functions whose result size an argument chooses (`lpad`, `rpad`, `repeat`), kept
//! to results of at most [`MAX_STRING`] characters: DataFusion allows two billion, so one row
//! of `lpad(s, 2147483647)` allocates gigabytes (several times that for a multi-byte fill),
//! which stalls the query or ends the process. Each is DataFusion's own function behind a
//! check of the length (or count) arguments, with a clear error past the limit.

use std::sync::Arc;

use datafusion_common::arrow::array::{Array, AsArray};
use datafusion_common::arrow::compute::cast;
use datafusion_common::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion_common::{exec_err, Result, ScalarValue};
use datafusion_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

/// The longest string `lpad`, `rpad` and `repeat` may make, in characters (16 Mi).
pub const MAX_STRING: i64 = 16 << 20;

/// Wrap the size-taking string functions among `functions`; others are returned unchanged.
pub fn bounded(f: Arc<ScalarUDF>) -> Arc<ScalarUDF> {
    match f.name() {
        "lpad" | "rpad" | "repeat" => Arc::new(ScalarUDF::new_from_impl(Bounded { inner: f })),
        _ => f,
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
}

/// The largest integer in `v` (an Int64 cast of it), if any.
fn largest(v: &ColumnarValue) -> Result<Option<i64>> {
    Ok(match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(n) => n,
            _ => None,
        },
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Int64)?;
            datafusion_common::arrow::compute::max(a.as_primitive::<Int64Type>())
        }
    })
}

/// The longest string in `v`, in characters.
fn longest(v: &ColumnarValue) -> Result<i64> {
    let chars = |s: Option<&str>| s.map_or(0, |s| s.chars().count() as i64);
    Ok(match v {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(t) => chars(t.as_deref()),
            _ => 0,
        },
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Utf8)?;
            let a = a.as_string::<i32>();
            (0..a.len()).filter(|&i| a.is_valid(i)).map(|i| chars(Some(a.value(i)))).max().unwrap_or(0)
        }
    })
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.inner.name();
        if let Some(size) = args.args.get(1) {
            let wanted = match largest(size)? {
                // repeat(s, n): n copies of s
                Some(n) if name == "repeat" => {
                    n.saturating_mul(args.args.first().map(longest).transpose()?.unwrap_or(0))
                }
                Some(n) => n,
                None => 0,
            };
            if wanted > MAX_STRING {
                return exec_err!(
                    "{name}: a result of {wanted} characters is over the limit of {MAX_STRING} (16 Mi) a string may have"
                );
            }
            // a batch's strings share one buffer with 32-bit offsets, reserved up front (up to
            // 4 bytes a character)
            let batch = wanted.saturating_mul(4).saturating_mul(args.number_rows as i64);
            if batch > i64::from(i32::MAX) {
                return exec_err!(
                    "{name}: {} results of up to {wanted} characters are more than one batch can hold (2 GiB); lower batch.size or the length",
                    args.number_rows
                );
            }
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_taking_functions_are_wrapped_and_keep_their_names() {
        let all = datafusion_functions::all_default_functions();
        let wrapped: Vec<_> = all.iter().map(|f| bounded(Arc::clone(f))).collect();
        for (f, w) in all.iter().zip(&wrapped) {
            assert_eq!(f.name(), w.name());
            assert_eq!(Arc::ptr_eq(f, w), !matches!(f.name(), "lpad" | "rpad" | "repeat"), "{}", f.name());
        }
        let n = |v: i64| ColumnarValue::Scalar(ScalarValue::Int64(Some(v)));
        assert_eq!(largest(&n(7)).unwrap(), Some(7));
        let s = ColumnarValue::Scalar(ScalarValue::Utf8(Some("héllo".into())));
        assert_eq!(longest(&s).unwrap(), 5);
    }
}
