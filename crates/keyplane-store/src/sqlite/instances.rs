//! TODO(port)

use super::SqliteStore;

#[async_trait::async_trait]
impl crate::Instances for SqliteStore {}
