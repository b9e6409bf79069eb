//! The action tables: each dialect lists its actions once, each row naming the action, the RAM
//! action a policy names it by, whether it changes anything, and its handler. The RAM gate, the
//! ClientToken claim, the audit log and the throttle's buckets read the row; no rule is derived
//! from an action's name.

use std::future::Future;
use std::pin::Pin;

/// What a handler returns, boxed so that one table can hold handlers of different shapes.
pub type Answer<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

pub struct Action<H: 'static> {
    /// The `Action` parameter.
    pub name: &'static str,
    /// What a RAM policy names it by (`ecs:AttachKeyPair`, `ram:CreateUser`).
    pub ram: &'static str,
    /// Whether it changes anything: a write passes the RAM gate before it runs (a read answers
    /// with what the caller may see instead), honours a ClientToken and is always audited.
    pub writes: bool,
    pub handler: H,
}

/// The `writes` of a row that changes something, and of one that does not.
pub const WRITES: bool = true;
pub const READS: bool = false;

/// A row of an ECS dialect's table: `call` is a handler path, or a closure that adds arguments;
/// the RAM action is `ecs:` and the name unless given (Volcengine's batch actions share their
/// single one's).
macro_rules! ecs_action {
    ($name:literal, $writes:expr, $call:expr) => {
        $crate::actions::ecs_action!($name, concat!("ecs:", $name), $writes, $call)
    };
    ($name:literal, $ram:expr, $writes:expr, $call:expr) => {
        $crate::actions::Action {
            name: $name,
            ram: $ram,
            writes: $writes,
            handler: |c| Box::pin(async move { ($call)(c).await.map($crate::reply::Reply::from) }),
        }
    };
}
pub(crate) use ecs_action;

/// The row of `name`, if the dialect has that action.
pub fn find<H>(table: &'static [Action<H>], name: &str) -> Option<&'static Action<H>> {
    table.iter().find(|a| a.name == name)
}

/// Every action's name, for "did you mean" suggestions and tests.
pub fn names<H>(table: &'static [Action<H>]) -> Vec<&'static str> {
    table.iter().map(|a| a.name).collect()
}

#[cfg(test)]
mod tests {

    /// A row of the table in docs/RAM.md: the Alibaba names, the Volcengine names, the RAM action
    /// and whether the call changes anything.
    struct Documented {
        alibaba: Vec<String>,
        volcengine: Vec<String>,
        ram: String,
        writes: bool,
    }

    fn documented() -> Vec<Documented> {
        let names = |cell: &str| -> Vec<String> {
            cell.split(',')
                .map(str::trim)
                .filter(|n| *n != "—")
                .map(String::from)
                .collect()
        };
        include_str!("../../../docs/RAM.md")
            .lines()
            .filter(|l| l.starts_with("| ") && l.contains("`ecs:"))
            .map(|l| {
                let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
                Documented {
                    alibaba: names(cells[0]),
                    volcengine: names(cells[1]),
                    ram: cells[2].trim_matches('`').to_string(),
                    writes: cells[3] == "yes",
                }
            })
            .collect()
    }

    /// Every row of a dialect's table against the documented one, and back: the same actions,
    /// each with the same RAM action and the same answer to "does it change anything".
    fn matches(table: Vec<(&str, &str, bool)>, column: fn(&Documented) -> &Vec<String>) {
        let doc = documented();
        for (name, ram, writes) in &table {
            let row = doc
                .iter()
                .find(|d| column(d).iter().any(|n| n == name))
                .unwrap_or_else(|| panic!("{name} is not in docs/RAM.md"));
            assert_eq!((row.ram.as_str(), row.writes), (*ram, *writes), "{name}");
        }
        for d in &doc {
            for name in column(d) {
                assert!(
                    table.iter().any(|(n, _, _)| n == name),
                    "docs/RAM.md lists {name}, which the dialect does not have"
                );
            }
        }
    }

    #[test]
    fn the_action_tables_match_the_documented_ram_table() {
        let aliyun = crate::aliyun::ACTIONS.iter();
        matches(aliyun.map(|a| (a.name, a.ram, a.writes)).collect(), |d| {
            &d.alibaba
        });
        let volc = crate::volc::ACTIONS.iter();
        matches(volc.map(|a| (a.name, a.ram, a.writes)).collect(), |d| {
            &d.volcengine
        });
        for a in crate::ram_api::ACTIONS {
            assert_eq!(a.ram, format!("ram:{}", a.name));
            let reads = ["Get", "List"].iter().any(|p| a.name.starts_with(p));
            assert_eq!(a.writes, !reads, "{}", a.name);
        }
    }
}
