//! A minimal XML element tree and writer, enough for the DASH manifest and SQS's
//! Query-protocol responses: elements, attributes in the order given, children or a
//! text value, and escaping. For reading, [`texts_of`]: the text of the elements of one
//! name in a small request document (S3's DeleteObjects), nothing more.

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

/// The text of every `<name>` element of `doc`, in order, entities decoded (`&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#N;`, `&#xH;`); `<name/>` reads as empty. At
/// most `max` of them; markup inside one (nesting, CDATA) or one left open is an error.
pub fn texts_of(doc: &str, name: &str, max: usize) -> Result<Vec<String>, String> {
    let (open, close) = (format!("<{name}"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        // `<name>`, `<name attr="…">` or `<name/>`; not `<nameOther>`.
        let Some(end) = after.find('>') else { return Err(format!("<{name} is not closed")) };
        let tag = &after[..end];
        if !(tag.is_empty() || tag.starts_with(char::is_whitespace) || tag == "/") {
            rest = &after[end..];
            continue;
        }
        if out.len() == max {
            return Err(format!("more than {max} <{name}> elements"));
        }
        let body_start = &after[end + 1..];
        if tag.ends_with('/') {
            out.push(String::new());
            rest = body_start;
            continue;
        }
        let Some(stop) = body_start.find(&close) else { return Err(format!("<{name}> is not closed")) };
        let text = &body_start[..stop];
        if text.contains('<') {
            return Err(format!("<{name}> holds markup"));
        }
        out.push(unescape(text)?);
        rest = &body_start[stop + close.len()..];
    }
    Ok(out)
}

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find(';').filter(|e| *e <= 10).ok_or("an entity is not closed")?;
        let entity = &after[..end];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => {
                u32::from_str_radix(&e[2..], 16).ok().and_then(char::from_u32).ok_or("a bad character reference")?
            }
            e if e.starts_with('#') => {
                e[1..].parse::<u32>().ok().and_then(char::from_u32).ok_or("a bad character reference")?
            }
            _ => return Err(format!("unknown entity &{entity};")),
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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

    #[test]
    fn texts_of_reads_a_delete_objects_document() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>cams/a&amp;b.jpg</Key></Object>
<Object><Key>x&#x41;&#66;</Key><VersionId>1</VersionId></Object><Object><Key/></Object><Quiet>true</Quiet></Delete>"#;
        assert_eq!(texts_of(doc, "Key", 10).unwrap(), ["cams/a&b.jpg", "xAB", ""]);
        assert_eq!(texts_of(doc, "Quiet", 1).unwrap(), ["true"]);
        assert!(texts_of(doc, "Key", 2).is_err(), "over the limit");
        assert!(texts_of("<Key>a<b/></Key>", "Key", 5).is_err());
        assert!(texts_of("<Key>open", "Key", 5).is_err());
        assert!(texts_of("<Key>&bogus;</Key>", "Key", 5).is_err());
        assert_eq!(texts_of("<Keys>x</Keys>", "Key", 5).unwrap(), Vec::<String>::new());
    }
}
