//! Queries over events by type and tags: the filters of DCB (Dynamic Consistency Boundary) append
//! conditions and of reads.

use crate::names::{EventType, Tag};

/// Events matching any of the items.
///
/// An empty query matches no event (an append condition on it always holds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub items: Vec<QueryItem>,
}

/// Events whose type is one of `types` (any type when empty) and that carry every tag in `tags`.
/// An item with neither matches every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryItem {
    pub types: Vec<EventType>,
    pub tags: Vec<Tag>,
}

impl Query {
    pub fn new(items: Vec<QueryItem>) -> Self {
        Self { items }
    }

    /// Whether an event with this type and these tags matches.
    pub fn matches<'a>(&self, event_type: &str, tags: impl Iterator<Item = &'a str> + Clone) -> bool {
        self.items.iter().any(|item| item.matches(event_type, tags.clone()))
    }
}

impl QueryItem {
    pub fn matches<'a>(&self, event_type: &str, tags: impl Iterator<Item = &'a str> + Clone) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t.as_str() == event_type))
            && self.tags.iter().all(|wanted| tags.clone().any(|tag| tag == wanted.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_ored_types_any_tags_all() {
        let item = |types: &[&str], tags: &[&str]| QueryItem {
            types: types.iter().map(|t| EventType::new(*t).unwrap()).collect(),
            tags: tags.iter().map(|t| Tag::new(*t).unwrap()).collect(),
        };
        let query = Query::new(vec![item(&["A", "B"], &["k:1"]), item(&[], &["k:2", "x:y"])]);
        assert!(query.matches("A", ["k:1"].into_iter()));
        assert!(query.matches("B", ["z:z", "k:1"].into_iter()));
        assert!(!query.matches("C", ["k:1"].into_iter()));
        assert!(query.matches("C", ["x:y", "k:2"].into_iter()));
        assert!(!query.matches("C", ["k:2"].into_iter()));
        assert!(Query::new(vec![QueryItem::default()]).matches("Anything", std::iter::empty()));
        assert!(!Query::default().matches("Anything", std::iter::empty()));
    }
}
