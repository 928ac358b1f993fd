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
};

struct Token {
  std::string value;
  TokenType type;
  int line = 0, column = 0;  // 1-based position in the original source
};

// Throws Error "chat template line L, column C: ..." on malformed input.
std::vector<Token> tokenize(const std::string& source);

// Builds the "line L, column C" prefix used by every template error.
std::string position(int line, int column);

}  // namespace dsv3::jinja
