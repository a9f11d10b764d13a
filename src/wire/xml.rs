//! A minimal XML element tree and writer, enough for the DASH manifest and SQS's
//! Query-protocol responses: elements, attributes in the order given, children or a
//! text value, and escaping. No parsing.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    name: String,
    attributes: Vec<(&'static str, String)>,
    children: Vec<Element>,
    text: Option<String>,
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element { name: name.into(), attributes: Vec::new(), children: Vec::new(), text: None }
    }

    /// An element holding only text: `<name>text</name>`.
    pub fn text(name: impl Into<String>, text: impl Into<String>) -> Self {
        Element { text: Some(text.into()), ..Element::new(name) }
    }

    pub fn attr(mut self, name: &'static str, value: impl ToString) -> Self {
        self.attributes.push((name, value.to_string()));
        self
    }

    pub fn attr_opt(self, name: &'static str, value: Option<impl ToString>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    pub fn child(mut self, child: Element) -> Self {
        self.children.push(child);
        self
    }

    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Self {
        self.children.extend(children);
        self
    }

    /// The document: an XML declaration, then this element.
    pub fn to_document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        for _ in 0..depth {
            out.push_str("  ");
        }
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attributes {
            let _ = write!(out, " {k}=\"");
            escape_into(out, v);
            out.push('"');
        }
        if let Some(text) = &self.text {
            out.push('>');
            escape_into(out, text);
            let _ = writeln!(out, "</{}>", self.name);
            return;
        }
        if self.children.is_empty() {
            out.push_str("/>\n");
            return;
        }
        out.push_str(">\n");
        for c in &self.children {
            c.write(out, depth + 1);
        }
        for _ in 0..depth {
            out.push_str("  ");
        }
        let _ = writeln!(out, "</{}>", self.name);
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_elements_with_escaped_attributes() {
        let doc = Element::new("A")
            .attr("x", "a&b\"<c>")
            .child(Element::new("B").attr_opt("y", Some(1)).attr_opt("z", None::<u8>))
            .child(Element::text("C", "1 < 2"))
            .to_document();
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<A x=\"a&amp;b&quot;&lt;c&gt;\">\n  <B y=\"1\"/>\n  <C>1 &lt; 2</C>\n</A>\n"
        );
    }
}
