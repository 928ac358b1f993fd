// Template source -> tokens, following @huggingface/jinja's lexer (with transformers'
// trim_blocks and lstrip_blocks), so that white space comes out identically.
#pragma once

#include <string>
#include <vector>

namespace dsv3::jinja {

enum class TokenType {
  kText,
  kNumericLiteral,
  kStringLiteral,
  kIdentifier,
  kEquals,
  kOpenParen,
  kCloseParen,
  kOpenStatement,
  kCloseStatement,
  kOpenExpression,
  kCloseExpression,
  kOpenSquareBracket,
  kCloseSquareBracket,
  kOpenCurlyBracket,
  kCloseCurlyBracket,
  kComma,
  kDot,
  kColon,
  kPipe,
  kAdditiveBinaryOperator,
  kMultiplicativeBinaryOperator,
  kExponentiationBinaryOperator,
  kComparisonBinaryOperator,
  kUnaryOperator,
  kComment,
  kError,  // the lexer's message (with its position) where the source stops being valid
};

struct Token {
  std::string value;
  TokenType type;
  int line = 0, column = 0;  // 1-based position in the original source
};

// Malformed input ends the tokens with a kError token whose value is the message ("chat template
// line L, column C: ..."). The parser throws it when it gets there, so that a syntax error earlier
// in the source is the one reported, as jinja2 (which lexes as it parses) reports it.
std::vector<Token> tokenize(const std::string& source);

// Builds the "line L, column C" prefix used by every template error.
std::string position(int line, int column);

}  // namespace dsv3::jinja
