//! TODO(port)

use super::SqliteStore;

#[async_trait::async_trait]
impl crate::Agents for SqliteStore {}
