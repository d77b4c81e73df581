// The one translation unit that compiles Asio and Beast (separate compilation keeps the others fast).
#include <boost/asio/impl/src.hpp>
#include <boost/beast/src.hpp>
