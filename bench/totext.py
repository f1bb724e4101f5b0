#!/usr/bin/env python3
"""totext.py: documentation files as plain UTF-8 text, for make_corpus.sh.

usage: python3 totext.py --text|--html|--javadoc|--gcide FILE...   (to stdout)

Standard library only, deterministic. Every file is read as UTF-8 (a byte
that is not valid UTF-8 becomes U+FFFD), CRLF becomes LF, and its text ends
with one blank line (text that is only whitespace is dropped).
  --text     plain text (a name ending in .gz or .dz, dictzip, is gunzipped)
  --gcide    the GCIDE dictd file: --text, less the "[1913 Webster]"-style
             source lines (one after every sense; noise for a tokenizer)
  --html     the prose of an HTML page (below)
  --javadoc  only javadoc's description blocks (below)
HTML: block elements
end a paragraph; whitespace inside a paragraph collapses to single spaces,
except in <pre>, which is kept as it is. Skipped: <head>, <script>, <style>,
<nav>, <header>, <footer>, and elements whose class names a navigation part
(navheader, navfooter, sphinxsidebar, related, ...). With --javadoc only the
text inside <div class="block"> (javadoc's description blocks: the prose of
the API comments) is kept.
"""
import gzip
import html.parser
import re
import sys

BLOCK = {
    'address', 'article', 'aside', 'blockquote', 'br', 'dd', 'details', 'div', 'dl', 'dt',
    'figcaption', 'figure', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'li', 'main', 'ol',
    'p', 'pre', 'section', 'summary', 'table', 'tbody', 'td', 'th', 'thead', 'tr', 'ul',
    'caption', 'body', 'title',
}
SKIP_TAGS = {'head', 'script', 'style', 'nav', 'header', 'footer', 'noscript', 'svg', 'button'}
SKIP_CLASS = re.compile(r'\b(navheader|navfooter|sphinxsidebar|related|footer|header|'
                        r'top-nav|sub-nav|flex-header|breadcrumbs|headerlink|toc|'
                        r'skip-nav|legalnotice)\b')
VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta',
        'param', 'source', 'track', 'wbr'}


class Extract(html.parser.HTMLParser):
    def __init__(self, javadoc):
        super().__init__(convert_charrefs=True)
        self.javadoc = javadoc
        self.stack = []      # (tag, skip, keep, pre) of each open element
        self.paras = []      # finished paragraphs
        self.cur = []        # text of the paragraph being read
        self.cur_pre = False # it is preformatted

    def state(self):
        if not self.stack:
            return False, not self.javadoc, False
        return self.stack[-1][1:]

    def flush(self):
        text = ''.join(self.cur)
        if self.cur_pre:
            lines = [ln.rstrip() for ln in text.split('\n')]
            while lines and not lines[0].strip():
                lines.pop(0)
            while lines and not lines[-1].strip():
                lines.pop()
            text = '\n'.join(lines)
        else:
            text = re.sub(r'\s+', ' ', text).strip()
        if text:
            self.paras.append(text)
        self.cur = []
        self.cur_pre = False

    def handle_starttag(self, tag, attrs):
        skip, keep, pre = self.state()
        if tag in BLOCK:
            self.flush()
        if tag in VOID:
            return
        cls = dict(attrs).get('class') or ''
        if tag in SKIP_TAGS or (cls and SKIP_CLASS.search(cls)):
            skip = True
        if self.javadoc and tag == 'div' and 'block' in cls.split():
            keep = True
        if tag == 'pre':
            pre = True
        self.stack.append((tag, skip, keep, pre))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        # close up to the matching open tag (HTML in the wild is not always balanced)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                if tag in BLOCK or self.stack[i][2] != (self.stack[i - 1][2] if i else not self.javadoc):
                    self.flush()
                del self.stack[i:]
                return

    def handle_data(self, data):
        skip, keep, pre = self.state()
        if skip or not keep:
            return
        if pre and not self.cur_pre:
            self.flush()
            self.cur_pre = True
        self.cur.append(data)


def html_text(raw, javadoc):
    p = Extract(javadoc)
    p.feed(raw)
    p.close()
    p.flush()
    return '\n\n'.join(p.paras)


SOURCE_LINE = re.compile(r'^\s*\[[^\]\n]*\]\s*$', re.M)


def convert(path, mode):
    with open(path, 'rb') as f:
        raw = f.read()
    if path.endswith(('.gz', '.dz')):
        raw = gzip.decompress(raw)
    text = raw.decode('utf-8', errors='replace').replace('\r\n', '\n')
    if mode in ('html', 'javadoc'):
        text = html_text(text, mode == 'javadoc')
    elif mode == 'gcide':
        text = SOURCE_LINE.sub('', text)
        text = re.sub(r'\n{3,}', '\n\n', text)
    text = text.strip('\n')
    return text + '\n\n' if text.strip() else ''


def main(argv):
    mode = None
    files = []
    for a in argv:
        if a in ('--text', '--html', '--javadoc', '--gcide'):
            mode = a[2:]
        elif a.startswith('-'):
            sys.exit(f'totext.py: unknown option {a}')
        else:
            files.append(a)
    if mode is None:
        sys.exit('usage: totext.py --text|--html|--javadoc|--gcide FILE...')
    w = sys.stdout.buffer
    for path in files:
        w.write(convert(path, mode).encode('utf-8'))


if __name__ == '__main__':
    main(sys.argv[1:])
