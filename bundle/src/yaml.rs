//! A YAML document as a tree whose every node knows its line, so a manifest error can say
//! "bundle.yml:14" rather than "somewhere in jobs.medallion".

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One node and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

/// A node's content. Scalars stay text: the manifest decides what a value must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `key: value` pairs in file order, each key with its own line.
    Map(Vec<(Key, Node)>),
    List(Vec<Node>),
    /// A scalar; `quoted` when it was written in quotes (so `"~"` is text, not null).
    Scalar {
        text: String,
        quoted: bool,
    },
    /// `~`, `null` or nothing.
    Null,
}

/// A mapping key and its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: usize,
}

/// A YAML syntax error, with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses one document. Anchors and aliases are refused: a manifest reads top to bottom.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        value: Value::Null,
    }))
}

enum Open {
    Map {
        line: usize,
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
    },
    List {
        line: usize,
        items: Vec<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: &str) {
        self.error.get_or_insert(SyntaxError {
            line,
            message: message.to_string(),
        });
    }

    /// Hands a finished node to its parent (or makes it the root).
    fn complete(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::List { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => match node.value {
                    Value::Scalar { text, .. } => {
                        *key = Some(Key {
                            name: text,
                            line: node.line,
                        })
                    }
                    Value::Null => {
                        *key = Some(Key {
                            name: String::new(),
                            line: node.line,
                        })
                    }
                    _ => {
                        let line = node.line;
                        self.fail(line, "a key must be a plain name, not a list or a map");
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, _, _) => {
                let quoted = !matches!(style, yaml_rust2::scanner::TScalarStyle::Plain);
                let value =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar { text, quoted }
                    };
                self.complete(Node { line, value });
            }
            Event::MappingStart(..) => self.stack.push(Open::Map {
                line,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceStart(..) => self.stack.push(Open::List {
                line,
                items: Vec::new(),
            }),
            Event::MappingEnd | Event::SequenceEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Map { line, entries, .. }) => Node {
                        line,
                        value: Value::Map(entries),
                    },
                    Some(Open::List { line, items }) => Node {
                        line,
                        value: Value::List(items),
                    },
                    None => return,
                };
                self.complete(node);
            }
            Event::Alias(_) => self.fail(
                line,
                "anchors and aliases (*name) are not supported in bundle.yml",
            ),
            _ => {}
        }
    }
}

impl Node {
    /// The scalar's text, if this is one.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Map(_) => "a map",
            Value::List(_) => "a list",
            Value::Scalar { .. } => "a value",
            Value::Null => "nothing",
        }
    }
}
