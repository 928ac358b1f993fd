// Markdown for replies: `marked` turns the model's text into HTML, `DOMPurify` sanitises that
// HTML, both from npm (web/package.json), embedded by the build under /web/vendor/. A build
// without them (no web/node_modules) serves the page without these files: replies then show as
// plain text.
//
// Safety: a reply is untrusted text. HTML written in it is shown as text, never as markup (so
// `<script>` in a reply reads as "<script>"); images become links (a reply must not make the
// browser fetch anything); the sanitiser then removes whatever else could run (javascript: links,
// event attributes). The server's Content-Security-Policy forbids inline scripts and other hosts
// besides.

let marked = null;
let purify = null;

export async function loadMarkdown() {
  try {
    const [m, p] = await Promise.all([import('./vendor/marked.esm.js'), import('./vendor/purify.es.mjs')]);
    const md = new m.Marked({ gfm: true, breaks: false, async: false });
    md.use({
      renderer: {
        html(token) {
          const text = escapeHtml(token.text);
          return token.block ? `<p class="raw-html">${text}</p>` : text;
        },
        image(token) {
          const label = escapeHtml(token.text || token.title || 'image');
          return `<a href="${escapeHtml(token.href)}">[image: ${label}]</a>`;
        },
      },
    });
    purify = p.default;
    purify.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A') {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
    marked = md;
    return true;
  } catch {
    return false;
  }
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// Safe HTML for `text`.
export function renderMarkdown(text) {
  if (!marked) return `<p class="plain">${escapeHtml(text)}</p>`;
  return purify.sanitize(marked.parse(text), { FORBID_TAGS: ['style', 'img', 'form', 'button'] });
}
