// A backend's response head fields as tether keeps them: in the order they
// came, names and values copied into one text buffer (or the whole head
// copied there once, see set_text), with a small entry per
// field (its Beast field enum and where its name and value are), both from the
// thread's RecyclingPool. Beast's basic_fields makes, for each field, a node
// linked into a list and into a case-insensitive multiset by name, which
// tether never searches on a response: it only walks the fields once to
// rewrite the head (headers.hpp). The status line's reason phrase is kept in
// the same text. Filled by ResponseParser, read by write_response_head.
// Offsets are 32-bit: a head is far smaller (the
// session's header_limit). Not thread-safe: one exchange's, on its worker.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string_view>
#include <type_traits>

#include <boost/beast/http/field.hpp>

#include "tether/core/recycling_pool.hpp"

namespace tether::http {

class FlatFields {
    struct Entry {
        boost::beast::http::field name;
        std::uint32_t name_at, name_size, value_at, value_size;
    };

public:
    /// One field, as Beast's basic_fields::value_type shows it.
    class Field {
    public:
        Field(const Entry& e, const char* text) : e_(&e), text_(text) {}
        boost::beast::http::field name() const { return e_->name; }
        std::string_view name_string() const { return {text_ + e_->name_at, e_->name_size}; }
        std::string_view value() const { return {text_ + e_->value_at, e_->value_size}; }

    private:
        const Entry* e_;
        const char* text_;
    };

    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = Field;
        using difference_type = std::ptrdiff_t;
        using pointer = void;
        using reference = Field;

        iterator() = default;
        iterator(const Entry* e, const char* text) : e_(e), text_(text) {}
        Field operator*() const { return Field(*e_, text_); }
        iterator& operator++() {
            ++e_;
            return *this;
        }
        iterator operator++(int) {
            iterator old = *this;
            ++e_;
            return old;
        }
        bool operator==(const iterator& o) const { return e_ == o.e_; }

    private:
        const Entry* e_ = nullptr;
        const char* text_ = nullptr;
    };

    FlatFields() = default;
    FlatFields(const FlatFields&) = delete;
    FlatFields& operator=(const FlatFields&) = delete;

    /// Appends a field (name and value copied).
    void add(boost::beast::http::field f, std::string_view name, std::string_view value) {
        const std::size_t at = text_.size();
        char* p = text_.extend(name.size() + value.size(), kUsualText);
        if (!name.empty()) std::memcpy(p, name.data(), name.size());
        if (!value.empty()) std::memcpy(p + name.size(), value.data(), value.size());
        *entries_.extend(1, kUsualFields) = {f, static_cast<std::uint32_t>(at),
                                             static_cast<std::uint32_t>(name.size()),
                                             static_cast<std::uint32_t>(at + name.size()),
                                             static_cast<std::uint32_t>(value.size())};
    }

    /// A head copied whole instead of field by field (ResponseParser's own
    /// parser: one copy, not two per field): `text` becomes the text, which
    /// must be empty, and add_at / set_reason_at name offsets in it.
    void set_text(std::string_view text) {
        if (!text.empty()) std::memcpy(text_.extend(text.size(), kUsualText), text.data(), text.size());
    }
    void add_at(boost::beast::http::field f, std::uint32_t name_at, std::uint32_t name_size,
                std::uint32_t value_at, std::uint32_t value_size) {
        *entries_.extend(1, kUsualFields) = {f, name_at, name_size, value_at, value_size};
    }
    void set_reason_at(std::uint32_t at, std::uint32_t size) {
        reason_at_ = at;
        reason_size_ = size;
    }

    /// Keeps the status line's reason phrase (copied), replacing any earlier.
    void set_reason(std::string_view reason) {
        reason_at_ = static_cast<std::uint32_t>(text_.size());
        reason_size_ = static_cast<std::uint32_t>(reason.size());
        if (!reason.empty())
            std::memcpy(text_.extend(reason.size(), kUsualText), reason.data(), reason.size());
    }
    std::string_view reason() const {
        if (reason_size_ == 0) return {};
        return {text_.data() + reason_at_, reason_size_};
    }

    /// Forgets the reason and every field (their memory is kept).
    void clear() {
        entries_.clear();
        text_.clear();
        reason_at_ = reason_size_ = 0;
    }

    iterator begin() const { return {entries_.data(), text_.data()}; }
    iterator end() const { return {entries_.data() + entries_.size(), text_.data()}; }
    std::size_t size() const { return entries_.size(); }
    bool empty() const { return entries_.size() == 0; }

    static constexpr std::size_t kUsualFields = 12;  ///< entries of the first block
    static constexpr std::size_t kUsualText = 512;   ///< bytes of the first block

private:
    // A growable array of a trivially copyable T in RecyclingPool blocks (a
    // std::vector's range insert took ~90 instructions per field's name or
    // value, callgrind).
    template <class T>
    class Array {
    public:
        Array() = default;
        Array(const Array&) = delete;
        Array& operator=(const Array&) = delete;
        ~Array() {
            if (data_) RecyclingPool::deallocate(data_, cap_ * sizeof(T));
        }
        /// Room for n more, at the end; the first block holds at least `first`.
        T* extend(std::size_t n, std::size_t first) {
            if (cap_ - size_ < n) grow(size_ + n, first);
            T* p = data_ + size_;
            size_ += n;
            return p;
        }
        const T* data() const { return data_; }
        std::size_t size() const { return size_; }
        void clear() { size_ = 0; }

    private:
        [[gnu::noinline]] void grow(std::size_t need, std::size_t first) {
            const std::size_t cap = std::max({need, first, 2 * cap_});
            T* d = static_cast<T*>(RecyclingPool::allocate(cap * sizeof(T)));
            if (size_ > 0) std::memcpy(d, data_, size_ * sizeof(T));
            if (data_) RecyclingPool::deallocate(data_, cap_ * sizeof(T));
            data_ = d;
            cap_ = cap;
        }
        static_assert(std::is_trivially_copyable_v<T>);
        T* data_ = nullptr;
        std::size_t size_ = 0;
        std::size_t cap_ = 0;
    };

    Array<Entry> entries_;
    Array<char> text_;
    std::uint32_t reason_at_ = 0, reason_size_ = 0;
};

}  // namespace tether::http
