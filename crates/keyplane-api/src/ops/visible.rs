//! Listings as the caller may see them: the root sees the store's own page; a RAM user sees the
//! rows its policies allow, filtered and then paged in memory (a keyset token then counts rows of
//! the filtered list).

use keyplane_core::model::{Instance, KeyPair};
use keyplane_core::CoreError;
use keyplane_store::{InstanceFilter, KeyPairFilter, Listing, Page};

use crate::pipeline::Ctx;

/// How many rows a filtered (RAM user) listing reads at most before paging in memory.
pub const FILTER_SCAN_LIMIT: u64 = 100_000;

/// The instances of `filter` the caller may `action` (`ecs:DescribeInstances`), one page.
pub async fn instances(
    ctx: &Ctx<'_>,
    action: &str,
    filter: &InstanceFilter,
    page: Page,
) -> Result<Listing<Instance>, CoreError> {
    let store = &ctx.state.store;
    if ctx.caller.is_root() {
        return store.list_instances(filter, page).await;
    }
    let all = store.list_instances(filter, scan()).await?.items;
    Ok(allowed(all, page, |i| {
        ctx.caller
            .allowed(action, &ctx.caller.instance_arn(&i.region_id, &i.id))
    }))
}

/// The key pairs of `filter` the caller may `action` (`ecs:DescribeKeyPairs`), one page.
pub async fn key_pairs(
    ctx: &Ctx<'_>,
    action: &str,
    filter: &KeyPairFilter,
    page: Page,
) -> Result<Listing<KeyPair>, CoreError> {
    let store = &ctx.state.store;
    if ctx.caller.is_root() {
        return store.list_key_pairs(filter, page).await;
    }
    let all = store.list_key_pairs(filter, scan()).await?.items;
    Ok(allowed(all, page, |k| {
        ctx.caller
            .allowed(action, &ctx.caller.keypair_arn(&k.region_id, &k.name))
    }))
}

fn scan() -> Page {
    Page::Offset {
        offset: 0,
        limit: FILTER_SCAN_LIMIT,
    }
}

/// The page of `all` that passes `may_see`.
fn allowed<T>(mut all: Vec<T>, page: Page, may_see: impl Fn(&T) -> bool) -> Listing<T> {
    all.retain(may_see);
    let (offset, limit) = match page {
        Page::Offset { offset, limit } => (offset, limit),
        Page::After { seq, limit } => (seq.max(0) as u64, limit),
    };
    let (items, total, next) = page_in_memory(all, offset as usize, limit as usize);
    let next_seq = match page {
        Page::After { .. } => next.map(|n| n as i64),
        Page::Offset { .. } => None,
    };
    Listing {
        items,
        total,
        next_seq,
    }
}

/// The slice `offset..offset+limit` of a list filtered in memory, its total, and the next offset.
pub fn page_in_memory<T>(
    mut items: Vec<T>,
    offset: usize,
    limit: usize,
) -> (Vec<T>, u64, Option<usize>) {
    let total = items.len();
    let end = (offset + limit).min(total);
    let page: Vec<T> = if offset < total {
        items.drain(offset..end).collect()
    } else {
        Vec::new()
    };
    (page, total as u64, (end < total).then_some(end))
}
