//! Streaming CSV with the quirks of real exports: any of four delimiters, a UTF-8 byte-order
//! mark, Windows-1252 files, quoted fields with line breaks, preamble lines before the header,
//! and rows with too few or too many cells.

use std::io::{BufRead, BufReader, Read};

/// How the file's text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// UTF-8 (with or without a byte-order mark).
    Utf8,
    /// Windows-1252, the superset of Latin-1 that old Windows exports use.
    Windows1252,
}

/// What sniffing found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dialect {
    /// `,` `;` tab or `|`.
    pub delimiter: u8,
    /// Text encoding.
    pub encoding: Encoding,
    /// A UTF-8 byte-order mark was present (and is skipped).
    pub bom: bool,
    /// Number of lines before the header row (instructions in some templates).
    pub preamble_rows: usize,
}

/// A problem with one row: its number (1-based, counting every row of the file as a
/// spreadsheet does, preamble and header included; a cell with line breaks is still one row),
/// the column when known, and a stable code. Never the value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("row {row}: {code}{}", .column.as_ref().map(|c| format!(" (column {c})")).unwrap_or_default())]
pub struct RowError {
    /// Row number.
    pub row: u64,
    /// Column name, when one column is at fault.
    pub column: Option<String>,
    /// `ragged_row`, `invalid_text`, `malformed_csv`, `field_too_long`, `unbalanced_quote`.
    pub code: String,
}

/// One data row: its number and its cells, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Row number, as a spreadsheet shows it (1-based, header and preamble counted).
    pub number: u64,
    /// The cells, as many as the header has.
    pub cells: Vec<String>,
}

const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];
/// Longest cell accepted; longer ones are a row error, not an allocation.
const MAX_CELL: usize = 1024 * 1024;

/// Bytes Windows-1252 leaves undefined: a file that has them is not in that encoding.
const UNDEFINED_1252: [u8; 5] = [0x81, 0x8D, 0x8F, 0x90, 0x9D];

/// A cell's text, or `None` when it is not text: not valid in the file's encoding, or holding
/// a control character (NUL, C0 other than tab and line breaks, C1), which no name, address
/// or note is written with and which a damaged file is full of. A byte-order mark at the
/// start of a cell (files joined end to end) is dropped.
fn decode(bytes: &[u8], encoding: Encoding) -> Option<String> {
    let text = match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).ok()?.to_string(),
        Encoding::Windows1252 => {
            if bytes.iter().any(|b| UNDEFINED_1252.contains(b)) {
                return None;
            }
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned()
        }
    };
    let control = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.chars().any(control) {
        return None;
    }
    Some(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Guesses the dialect from the first bytes of a file.
pub fn sniff(sample: &[u8]) -> Dialect {
    let bom = sample.starts_with(&[0xEF, 0xBB, 0xBF]);
    let body = if bom { &sample[3..] } else { sample };
    // UTF-8 when the sample is, or when its well-formed multi-byte characters are at least a
    // tenth of its malformed bytes: a few bad bytes in a UTF-8 file are their rows' problem
    // (the cell is refused as invalid_text), not a reason to read every accented name as
    // Windows-1252. Windows-1252 text almost never forms a valid multi-byte sequence by
    // chance, so a file of it has many malformed bytes for each one that does.
    let (multibyte, malformed) = utf8_evidence(body);
    let utf8 = malformed == 0 || (multibyte > 0 && multibyte * 10 >= malformed);
    let encoding = if bom || utf8 {
        Encoding::Utf8
    } else {
        Encoding::Windows1252
    };
    let text = decode_lossy(body);
    let lines: Vec<&str> = text.lines().take(50).collect();
    // The delimiter that splits most lines into the same number of cells (outside quotes).
    let mut best = (b',', 0usize, 0usize);
    for d in DELIMITERS {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| count_outside_quotes(l, d as char))
            .collect();
        let mut freq = std::collections::HashMap::new();
        for &c in counts.iter().filter(|&&c| c > 0) {
            *freq.entry(c).or_insert(0usize) += 1;
        }
        if let Some((&cells, &lines_with)) = freq.iter().max_by_key(|(c, n)| (**n, **c)) {
            if (lines_with, cells) > (best.1, best.2) {
                best = (d, lines_with, cells);
            }
        }
    }
    let delimiter = best.0;
    // The header is the first row (a record: quoted line breaks included) most of whose cells
    // are filled and short.
    let preamble_rows = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(body)
        .byte_records()
        .take(50)
        .position(|r| {
            r.ok().is_some_and(|rec| {
                let cells: Vec<String> = rec.iter().map(decode_lossy).collect();
                looks_like_header(&cells)
            })
        })
        .unwrap_or(0);
    Dialect {
        delimiter,
        encoding,
        bom,
        preamble_rows,
    }
}

/// Counts well-formed multi-byte UTF-8 characters and malformed sequences in a sample (a
/// sequence cut off at the sample's end is neither).
fn utf8_evidence(mut bytes: &[u8]) -> (usize, usize) {
    let (mut multibyte, mut malformed) = (0, 0);
    loop {
        let (valid, rest) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (ok, after) = bytes.split_at(e.valid_up_to());
                let ok = std::str::from_utf8(ok).unwrap_or_default();
                match e.error_len() {
                    Some(n) => {
                        malformed += 1;
                        (ok, &after[n..])
                    }
                    None => (ok, &[][..]),
                }
            }
        };
        multibyte += valid.chars().filter(|c| c.len_utf8() > 1).count();
        if rest.is_empty() {
            return (multibyte, malformed);
        }
        bytes = rest;
    }
}

fn decode_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(bytes)
            .0
            .into_owned(),
    }
}

fn count_outside_quotes(line: &str, d: char) -> usize {
    let mut inside = false;
    line.chars()
        .filter(|&c| {
            if c == '"' {
                inside = !inside;
            }
            c == d && !inside
        })
        .count()
}

fn looks_like_header(cells: &[String]) -> bool {
    if cells.len() < 2 {
        return false;
    }
    let filled = cells.iter().filter(|c| !c.trim().is_empty()).count();
    filled * 10 >= cells.len() * 6 && cells.iter().all(|c| c.len() <= 100)
}

/// Reads a CSV export row by row with bounded memory.
pub struct Reader<R: Read> {
    csv: csv::Reader<QuoteGuard<BufReader<R>>>,
    /// Rows (by number) whose opening quote never closed, from the guard.
    unbalanced: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
    dialect: Dialect,
    header: Vec<String>,
    record: csv::ByteRecord,
}

impl<R: Read> Reader<R> {
    /// Sniffs the dialect (unless given), skips the preamble and reads the header.
    pub fn new(input: R, dialect: Option<Dialect>) -> Result<Reader<R>, RowError> {
        let mut buf = BufReader::with_capacity(64 * 1024, input);
        let sample = buf
            .fill_buf()
            .map_err(|_| error(1, None, "unreadable"))?
            .to_vec();
        let dialect = dialect.unwrap_or_else(|| sniff(&sample));
        if dialect.bom {
            buf.consume(3);
        }
        let unbalanced = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let shape = std::rc::Rc::new(std::cell::Cell::new(None));
        let guard = QuoteGuard {
            delimiter: dialect.delimiter,
            shape: shape.clone(),
            inner: buf,
            out: Vec::new(),
            at: 0,
            pending: std::collections::VecDeque::new(),
            records: 0,
            unbalanced: unbalanced.clone(),
        };
        let mut csv = csv::ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(guard);
        let mut record = csv::ByteRecord::new();
        let mut header = Vec::new();
        let mut skipped = 0;
        while csv
            .read_byte_record(&mut record)
            .map_err(|_| error(1, None, "malformed_csv"))?
        {
            if skipped < dialect.preamble_rows {
                skipped += 1;
                continue;
            }
            header = record
                .iter()
                .map(|c| {
                    decode(c, dialect.encoding)
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect();
            break;
        }
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(error(1, None, "no_header"));
        }
        shape.set(Some((dialect.delimiter, header.len() - 1)));
        Ok(Reader {
            csv,
            unbalanced,
            dialect,
            header,
            record,
        })
    }

    /// The header row's names, trimmed.
    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// The dialect in use.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// Names that appear more than once in the header.
    pub fn duplicate_columns(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut dup: Vec<String> = self
            .header
            .iter()
            .filter(|h| !h.is_empty() && !seen.insert(h.as_str()))
            .cloned()
            .collect();
        dup.dedup();
        dup
    }
}

/// A quoted cell may hold line breaks, but not this many: a quote still open after this many
/// lines is a stray one, not a long note.
const MAX_OPEN_LINES: usize = 500;

/// Hands the CSV parser the file line by line and catches a quote that never closes. Left
/// alone, one stray `"` makes the rest of the file one cell of one ragged row, and every row
/// after it is lost. A record whose quotes stay open for [`MAX_OPEN_LINES`] lines, or to the
/// end of the file, or over [`ROW_LIKE_LINES`] lines that each look like a whole row, is cut
/// back to its first line, which is passed on with its quotes taken
/// out and its row number noted (the reader refuses it as `unbalanced_quote`); the lines
/// after it are read again as rows of their own.
struct QuoteGuard<R: BufRead> {
    inner: R,
    delimiter: u8,
    /// Bytes ready for the parser, and how many it has taken.
    out: Vec<u8>,
    at: usize,
    /// Lines read ahead while a quote was open, to be read again.
    pending: std::collections::VecDeque<Vec<u8>>,
    /// Records handed over so far (the row number of the last one).
    records: u64,
    unbalanced: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
    /// The delimiter and how many of them a row has, once the header is read.
    shape: std::rc::Rc<std::cell::Cell<Option<(u8, usize)>>>,
}

/// This many lines in a row inside an open quote, each shaped like a whole row (no quote,
/// the header's number of delimiters), show the quote is stray.
const ROW_LIKE_LINES: usize = 3;

impl<R: BufRead> QuoteGuard<R> {
    fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if let Some(l) = self.pending.pop_front() {
            return Ok(Some(l));
        }
        let mut l = Vec::new();
        Ok((self.inner.read_until(b'\n', &mut l)? > 0).then_some(l))
    }

    fn quotes(line: &[u8]) -> usize {
        line.iter().filter(|b| **b == b'"').count()
    }

    /// Reads `line` as the CSV parser does, starting inside a quoted cell when `open`: a
    /// quote opens a quoted cell only as a cell's first byte; inside one, two quotes are a
    /// quote and one closes it; elsewhere a quote is just a character (`O"Neil`). Returns
    /// whether the line ends inside a quoted cell, whether a quote closed a cell with more
    /// text after it (`"Lee"x`: the mark of a stray quote, not of a quoted cell), and how
    /// many delimiters it has outside quoted cells. Counting quotes is not enough: `a"b,"c`
    /// has two and leaves a cell open.
    fn scan(&self, line: &[u8], mut open: bool) -> (bool, bool, usize) {
        let mut cell_start = !open;
        let mut closed_badly = false;
        let mut delimiters = 0;
        let mut i = 0;
        while i < line.len() {
            let b = line[i];
            if open {
                if b == b'"' {
                    if line.get(i + 1) == Some(&b'"') {
                        i += 2;
                        continue;
                    }
                    open = false;
                    let next = line.get(i + 1).copied();
                    if !matches!(next, None | Some(b'\n' | b'\r')) && next != Some(self.delimiter) {
                        closed_badly = true;
                    }
                }
                cell_start = false;
            } else if b == b'"' && cell_start {
                open = true;
                cell_start = false;
            } else {
                cell_start = b == self.delimiter || b == b'\n' || b == b'\r';
                delimiters += usize::from(b == self.delimiter);
            }
            i += 1;
        }
        (open, closed_badly, delimiters)
    }

    /// The next record's bytes, or nothing at the end of the file.
    fn record(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(first) = self.line()? else {
            return Ok(None);
        };
        self.records += 1;
        let (first_open, _, mut delimiters) = self.scan(&first, false);
        if !first_open {
            return Ok(Some(first));
        }
        let mut lines = vec![first];
        let mut open = true;
        // Lines in a row that would each be a whole row of their own: the quote is stray.
        let mut row_like = 0;
        let shape = self.shape.get();
        while open && lines.len() < MAX_OPEN_LINES && row_like < ROW_LIKE_LINES {
            let Some(next) = self.line()? else { break };
            let q = Self::quotes(&next);
            let (still_open, closed_badly, more) = self.scan(&next, true);
            delimiters += more;
            if closed_badly {
                // The quote that closed it is itself stray: so was the one that opened it.
                lines.push(next);
                break;
            }
            open = still_open;
            match shape {
                Some((d, n)) if q == 0 && next.iter().filter(|b| **b == d).count() == n => {
                    row_like += 1
                }
                _ => row_like = 0,
            }
            lines.push(next);
        }
        // A quoted cell with line breaks in it leaves the row as wide as the header; a stray
        // quote that happens to be closed by another one lines later does not.
        let width_ok = match shape {
            Some((_, n)) => delimiters == n,
            None => true,
        };
        if !open && width_ok {
            return Ok(Some(lines.concat()));
        }
        self.unbalanced.borrow_mut().push(self.records);
        let mut rest = lines.split_off(1);
        while let Some(l) = rest.pop() {
            self.pending.push_front(l);
        }
        let mut first = lines.pop().unwrap_or_default();
        first.retain(|b| *b != b'"');
        Ok(Some(first))
    }
}

impl<R: BufRead> Read for QuoteGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.out.len() {
            match self.record()? {
                Some(r) => {
                    self.out = r;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn error(row: u64, column: Option<&str>, code: &str) -> RowError {
    RowError {
        row,
        column: column.map(str::to_string),
        code: code.to_string(),
    }
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Row, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = self.csv.position().record() + 1;
            match self.csv.read_byte_record(&mut self.record) {
                Ok(false) => return None,
                Err(e) => {
                    let line = e.position().map(|p| p.record() + 1).unwrap_or(line);
                    // Skip to the next line and carry on: one bad row is not the file.
                    return Some(Err(error(line, None, "malformed_csv")));
                }
                Ok(true) => {
                    let number = self
                        .record
                        .position()
                        .map(|p| p.record() + 1)
                        .unwrap_or(line);
                    if self.unbalanced.borrow().contains(&number) {
                        return Some(Err(error(number, None, "unbalanced_quote")));
                    }
                    if self.record.len() == 1 && self.record.get(0).is_some_and(|c| c.is_empty()) {
                        continue; // blank line
                    }
                    if self.record.len() != self.header.len() {
                        return Some(Err(error(number, None, "ragged_row")));
                    }
                    let mut cells = Vec::with_capacity(self.record.len());
                    for (i, c) in self.record.iter().enumerate() {
                        if c.len() > MAX_CELL {
                            return Some(Err(error(
                                number,
                                self.header.get(i).map(String::as_str),
                                "field_too_long",
                            )));
                        }
                        match decode(c, self.dialect.encoding) {
                            Some(s) => cells.push(s),
                            None => {
                                return Some(Err(error(
                                    number,
                                    self.header.get(i).map(String::as_str),
                                    "invalid_text",
                                )))
                            }
                        }
                    }
                    return Some(Ok(Row { number, cells }));
                }
            }
        }
    }
}
