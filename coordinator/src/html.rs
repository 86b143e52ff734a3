//! `report.html`: the Markdown report rendered to one self-contained HTML file — its SVG
//! figures inlined, no scripts, fonts or anything fetched — so it opens anywhere, offline.
//!
//! The converter handles exactly what `report.rs` writes: headings, paragraphs, pipe tables,
//! fenced code blocks, `- ` bullet lists, `**bold**`, `` `code` ``, `&nbsp;` and image
//! references to SVG files, which are inlined.

use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace("&amp;nbsp;", "&nbsp;")
}

/// Inline markup: code spans, bold, inlined SVG images.
fn inline(text: &str, base: &Path) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("![") {
        out.push_str(&spans(&rest[..start]));
        let after = &rest[start..];
        let (Some(mid), Some(end)) = (after.find("]("), after.find(')')) else {
            out.push_str(&spans(after));
            return out;
        };
        let alt = &after[2..mid];
        let path = &after[mid + 2..end];
        match std::fs::read_to_string(base.join(path)) {
            Ok(svg) if path.ends_with(".svg") => out.push_str(&format!("<figure>{}<figcaption>{}</figcaption></figure>", svg, escape(alt))),
            _ => out.push_str(&format!("<em>[missing figure {}]</em>", escape(path))),
        }
        rest = &after[end + 1..];
    }
    out.push_str(&spans(rest));
    out
}

fn spans(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            for (k, seg) in part.split("**").enumerate() {
                if k % 2 == 1 {
                    out.push_str(&format!("<strong>{seg}</strong>"));
                } else {
                    out.push_str(seg);
                }
            }
        }
    }
    out
}

fn cells(line: &str) -> Vec<&str> {
    let t = line.trim().trim_start_matches('|').trim_end_matches('|');
    t.split('|').map(str::trim).collect()
}

pub fn render(markdown: &str, title: &str, base: &Path) -> String {
    let mut body = String::new();
    let lines: Vec<&str> = markdown.lines().collect();
    let mut i = 0;
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, body: &mut String| {
        if !paragraph.is_empty() {
            body.push_str(&format!("<p>{}</p>\n", inline(&paragraph.join(" "), base)));
            paragraph.clear();
        }
    };
    while i < lines.len() {
        let line = lines[i];
        if line.starts_with("```") {
            flush(&mut paragraph, &mut body);
            body.push_str("<pre>");
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                body.push_str(&escape(lines[i]));
                body.push('\n');
                i += 1;
            }
            body.push_str("</pre>\n");
        } else if let Some(h) = line.strip_prefix('#') {
            flush(&mut paragraph, &mut body);
            let level = 1 + h.chars().take_while(|c| *c == '#').count();
            body.push_str(&format!("<h{level}>{}</h{level}>\n", spans(h.trim_start_matches('#').trim())));
        } else if line.trim_start().starts_with('|') {
            flush(&mut paragraph, &mut body);
            body.push_str("<table>\n");
            let header = cells(line);
            body.push_str(&format!("<tr>{}</tr>\n", header.iter().map(|c| format!("<th>{}</th>", spans(c))).collect::<String>()));
            i += 1;
            if i < lines.len() && lines[i].contains("---") {
                i += 1;
            }
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                let row = cells(lines[i]);
                let class = if lines[i].contains("**") { " class=\"best\"" } else { "" };
                body.push_str(&format!("<tr{class}>{}</tr>\n", row.iter().map(|c| format!("<td>{}</td>", spans(c))).collect::<String>()));
                i += 1;
            }
            body.push_str("</table>\n");
            continue;
        } else if line.starts_with("- ") {
            flush(&mut paragraph, &mut body);
            body.push_str("<ul>\n");
            while i < lines.len() && lines[i].starts_with("- ") {
                body.push_str(&format!("<li>{}</li>\n", inline(&lines[i][2..], base)));
                i += 1;
            }
            body.push_str("</ul>\n");
            continue;
        } else if line.trim().is_empty() {
            flush(&mut paragraph, &mut body);
        } else {
            paragraph.push(line);
        }
        i += 1;
    }
    flush(&mut paragraph, &mut body);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n{}</body>\n</html>\n",
        escape(title),
        STYLE,
        body
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f2}
tr.best td{background:#fff3c4}
code{background:#f4f4f4;padding:0 3px;font-size:0.92em}
figure{display:inline-block;margin:0.5em 1em 0.5em 0}
figcaption{font-size:0.85em;color:#555}
h1{border-bottom:2px solid #0072B2}
h2{border-bottom:1px solid #ddd;margin-top:2em}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;font-size:0.85em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_bold_code_and_inlines_svg() {
        let dir = std::env::temp_dir().join(format!("fedrad-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>").unwrap();
        let md = "# Title <x>\n\nSome `code` and **bold**.\n\n| A | B |\n|---|---|\n| 1 | **2** |\n\n![roc](a.svg) ![gone](b.svg)\n\nList:\n\n- one `x`\n- two\n";
        let html = render(md, "t", &dir);
        assert!(html.contains("<h1>Title &lt;x&gt;</h1>"));
        assert!(html.contains("<code>code</code>") && html.contains("<strong>bold</strong>"));
        assert!(html.contains("<tr class=\"best\"><td>1</td><td><strong>2</strong></td></tr>"));
        assert!(html.contains("<svg xmlns") && html.contains("[missing figure b.svg]"));
        assert!(html.contains("<ul>\n<li>one <code>x</code></li>\n<li>two</li>\n</ul>"));
        assert!(!html.contains("http://") || html.matches("http://").count() == 1, "nothing fetched but the SVG namespace");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
