//! Where each node of a parsed spec is, found by JSON pointer without a string per node.
//!
//! A 10,000-stage spec has about 100,000 nodes, and almost no pointer is ever looked up: only
//! diagnostics and `explain` ask. So the nodes are kept in document order (a node before its
//! children, each knowing where its subtree ends) and a pointer is resolved by walking down from
//! the root, comparing keys, rather than by hashing a pointer built for every node.

/// Where one node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct NodeSpans {
    /// The node's key, for mapping values.
    pub key: Option<(usize, usize)>,
    /// The node itself, where it is used.
    pub value: (usize, usize),
    /// Where an alias or merge took it from, when that differs.
    pub defined: Option<(usize, usize)>,
}

/// What a node is, for walking into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Scalar,
    Seq,
    Map,
}

/// How a mapping entry's key reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyText {
    /// Not a mapping entry (the root, or a list item).
    None,
    /// The key's text is the source text at its span, as for every plain key.
    AtSpan,
    /// The key's text differs from what is written (quoted, escaped): the nth of `owned`.
    Owned(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    spans: NodeSpans,
    kind: Kind,
    key: KeyText,
    /// Index one past the node's last descendant.
    end: u32,
}

/// Every node of a document, in document order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct NodeTable {
    nodes: Vec<Node>,
    owned: Vec<String>,
}

impl NodeTable {
    /// A table sized for a document of `bytes` bytes: about one node per 20.
    pub fn for_text(bytes: usize) -> Self {
        NodeTable { nodes: Vec::with_capacity(bytes / 20), owned: Vec::new() }
    }

    /// Opens a node; its children follow, then [`NodeTable::close`] with the index returned.
    /// `key` is the entry's key as read, for a mapping's value; `text` is the source.
    pub fn open(&mut self, spans: NodeSpans, kind: Kind, key: Option<&str>, text: &str) -> usize {
        let key = match (key, spans.key) {
            (None, _) => KeyText::None,
            (Some(name), Some((start, len))) if text.get(start..start + len) == Some(name) => KeyText::AtSpan,
            (Some(name), _) => {
                self.owned.push(name.to_owned());
                KeyText::Owned((self.owned.len() - 1) as u32)
            }
        };
        let index = self.nodes.len();
        self.nodes.push(Node { spans, kind, key, end: 0 });
        index
    }

    /// Closes the node opened at `index`, after its last child.
    pub fn close(&mut self, index: usize) {
        self.nodes[index].end = self.nodes.len() as u32;
    }

    /// How many nodes there are.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The spans of the node at `pointer`.
    pub fn get(&self, pointer: &str, text: &str) -> Option<NodeSpans> {
        match self.walk(pointer, text) {
            (index, true) => Some(self.nodes[index].spans),
            _ => None,
        }
    }

    /// The spans of the node at `pointer` or of its nearest ancestor that exists.
    pub fn nearest(&self, pointer: &str, text: &str) -> Option<NodeSpans> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(self.nodes[self.walk(pointer, text).0].spans)
    }

    /// Follows `pointer` down from the root as far as it leads: the last node reached, and whether
    /// that is the whole pointer.
    fn walk(&self, pointer: &str, text: &str) -> (usize, bool) {
        if self.nodes.is_empty() {
            return (0, false);
        }
        if pointer.is_empty() {
            return (0, true);
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return (0, false);
        };
        let mut at = 0;
        for token in rest.split('/') {
            match self.child(at, token, text) {
                Some(child) => at = child,
                None => return (at, false),
            }
        }
        (at, true)
    }

    /// The child of `parent` that the pointer token `token` (still escaped) names.
    fn child(&self, parent: usize, token: &str, text: &str) -> Option<usize> {
        let node = &self.nodes[parent];
        let end = node.end as usize;
        let mut child = parent + 1;
        match node.kind {
            Kind::Scalar => None,
            Kind::Seq => {
                // Only the canonical spelling names an item: `/01` and `/+1` name nothing.
                let n: usize = token.parse().ok()?;
                if token != n.to_string() {
                    return None;
                }
                for _ in 0..n {
                    if child >= end {
                        return None;
                    }
                    child = self.nodes[child].end as usize;
                }
                (child < end).then_some(child)
            }
            Kind::Map => {
                let name = unescape(token)?;
                while child < end {
                    if self.key_text(child, text) == Some(name.as_ref()) {
                        return Some(child);
                    }
                    child = self.nodes[child].end as usize;
                }
                None
            }
        }
    }

    fn key_text<'t>(&'t self, index: usize, text: &'t str) -> Option<&'t str> {
        let node = &self.nodes[index];
        match node.key {
            KeyText::None => None,
            KeyText::AtSpan => node.spans.key.and_then(|(start, len)| text.get(start..start + len)),
            KeyText::Owned(i) => self.owned.get(i as usize).map(String::as_str),
        }
    }
}

/// A pointer token's text (RFC 6901): `~1` is `/` and `~0` is `~`; any other `~` makes a token
/// no key is written as.
fn unescape(token: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !token.contains('~') {
        return Some(std::borrow::Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(std::borrow::Cow::Owned(out))
}
