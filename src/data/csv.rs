//! The little CSV the commands read and write: comma-separated fields, a field in double quotes when
//! it holds a comma, a quote or a line break (a quote inside doubled), as RFC 4180 has it.

/// A field written so that a CSV reader gets it back.
pub fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The fields of one line, or what is wrong with it.
pub fn parse_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err(format!("text after the quoted field \"{field}\""));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        fields.push(field);
        if chars.next().is_none() {
            return Ok(fields);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        for fields in [vec!["a.png", "b.png"], vec!["with, comma.png", "say \"hi\".jpg"], vec!["", "x"], vec!["été/ü.png", "日本.png"]] {
            let line = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
            assert_eq!(parse_csv_line(&line).unwrap(), fields, "{line}");
        }
        assert_eq!(parse_csv_line("a,b\r\n").unwrap(), ["a", "b"]);
        assert!(parse_csv_line("\"open,b").is_err());
        assert!(parse_csv_line("\"a\"x,b").is_err());
    }
}
