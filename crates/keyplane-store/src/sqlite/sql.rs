//! Running SQL on a rusqlite connection with the statement text the PostgreSQL backend uses: `$N`
//! parameters (bound by their number, so a text may use `$2` before `$1`, or `$1` twice), a small
//! builder for the queries assembled from filters ([`Sql`], the shape of sqlx's `QueryBuilder`),
//! and row getters that turn a wrong stored value into an internal error instead of a panic.
//! Every statement is prepared once per connection and then taken from its cache.

use std::fmt::Write;

use rusqlite::types::FromSql;
use rusqlite::{CachedStatement, Connection, Row, ToSql};

use super::engine::db;
use crate::Result;

/// A statement assembled piece by piece; `push_bind` adds a parameter as the next `$N`.
#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    args: Vec<Box<dyn ToSql + Send>>,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, text: impl AsRef<str>) -> &mut Self {
        self.text.push_str(text.as_ref());
        self
    }

    pub fn push_bind(&mut self, value: impl ToSql + Send + 'static) -> &mut Self {
        self.args.push(Box::new(value));
        let _ = write!(self.text, "${}", self.args.len());
        self
    }

    /// ` AND column IN ($a, $b, …)`, or ` AND FALSE` for no values.
    pub fn push_in(&mut self, column: &str, values: &[String]) -> &mut Self {
        if values.is_empty() {
            return self.push(" AND FALSE");
        }
        self.push(format!(" AND {column} IN ("));
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(v.clone());
        }
        self.push(")")
    }

    pub fn args(&self) -> Vec<&dyn ToSql> {
        self.args.iter().map(|a| a.as_ref() as &dyn ToSql).collect()
    }
}

/// The cached statement for `text` with `args` bound by their `$N` numbers.
fn prepare<'c>(c: &'c Connection, text: &str, args: &[&dyn ToSql]) -> Result<CachedStatement<'c>> {
    let mut stmt = c.prepare_cached(text).map_err(db)?;
    for index in 1..=stmt.parameter_count() {
        let n: usize = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| db(rusqlite::Error::InvalidParameterName(text.to_string())))?;
        let arg = args
            .get(n - 1)
            .ok_or_else(|| db(rusqlite::Error::InvalidParameterCount(n, args.len())))?;
        stmt.raw_bind_parameter(index, arg).map_err(db)?;
    }
    Ok(stmt)
}

/// Runs a statement that returns no rows; the number of rows it changed.
pub(crate) fn execute(c: &Connection, text: &str, args: &[&dyn ToSql]) -> Result<usize> {
    prepare(c, text, args)?.raw_execute().map_err(db)
}

/// Like [`execute`], keeping the raw error (to tell a unique violation from other failures).
pub(crate) fn try_execute(
    c: &Connection,
    text: &str,
    args: &[&dyn ToSql],
) -> std::result::Result<usize, rusqlite::Error> {
    let mut stmt = c.prepare_cached(text)?;
    for index in 1..=stmt.parameter_count() {
        let n: usize = stmt
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| rusqlite::Error::InvalidParameterName(text.to_string()))?;
        let arg = args
            .get(n - 1)
            .ok_or(rusqlite::Error::InvalidParameterCount(n, args.len()))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    stmt.raw_execute()
}

/// Every row of a query, each mapped by `f`.
pub(crate) fn rows<T>(
    c: &Connection,
    text: &str,
    args: &[&dyn ToSql],
    mut f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = prepare(c, text, args)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db)? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The first row of a query, mapped by `f`, if there is one.
pub(crate) fn row<T>(
    c: &Connection,
    text: &str,
    args: &[&dyn ToSql],
    f: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut stmt = prepare(c, text, args)?;
    let mut rows = stmt.raw_query();
    match rows.next().map_err(db)? {
        Some(r) => f(r).map(Some),
        None => Ok(None),
    }
}

/// The first column of the first row (`COUNT(*)`, an ID), if there is a row.
pub(crate) fn scalar<T: FromSql>(
    c: &Connection,
    text: &str,
    args: &[&dyn ToSql],
) -> Result<Option<T>> {
    row(c, text, args, |r| get_at(r, 0))
}

/// The builder's statement: every row, each mapped by `f`.
pub(crate) fn built_rows<T>(
    c: &Connection,
    sql: &Sql,
    f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    rows(c, &sql.text, &sql.args(), f)
}

/// The column named `name` of a row.
pub(crate) fn get<T: FromSql>(r: &Row<'_>, name: &str) -> Result<T> {
    r.get(name).map_err(db)
}

/// The column at `index` of a row.
pub(crate) fn get_at<T: FromSql>(r: &Row<'_>, index: usize) -> Result<T> {
    r.get(index).map_err(db)
}
