// The chat page (web/) that `dsv3 serve` answers at `/`, embedded into the binary at build time
// (apps/cli/embed_web.cmake writes web_assets.cpp into the build directory), so the binary alone
// serves it and the page loads nothing from any other host.
#pragma once

#include <span>
#include <string_view>

namespace dsv3::cli {

struct WebAsset {
  std::string_view path;          // the URL path answered: "/", "/web/app.js", ...
  std::string_view content_type;  // "text/javascript; charset=utf-8"
  std::string_view body;
};

// Every embedded file.
std::span<const WebAsset> web_assets();

// False when the build found no web/node_modules (Markdown and HTML-sanitiser libraries from npm:
// scripts/setup.sh runs `npm ci` in web/); the page then shows replies as plain text.
bool web_has_markdown();

}  // namespace dsv3::cli
