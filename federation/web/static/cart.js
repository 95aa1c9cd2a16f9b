// The request cart: the search a researcher wants samples for (its URL query string, the
// same one the search page keeps) and the biobanks and collections chosen from its
// results. Kept in this browser (localStorage) so the search, biobank and request pages
// share it; nothing of it is sent until the request is submitted.

const CART_KEY = 'biofed.cart';
const listeners = new Set();

function empty() {
  return { search: '', biobanks: [] }; // biobanks: [{id, collections: [ids]}]
}

export function readCart() {
  try {
    const cart = JSON.parse(localStorage.getItem(CART_KEY) || 'null');
    if (cart && typeof cart.search === 'string' && Array.isArray(cart.biobanks)) return cart;
  } catch {
    // A damaged entry is an empty cart.
  }
  return empty();
}

function save(cart) {
  if (cart.biobanks.length) localStorage.setItem(CART_KEY, JSON.stringify(cart));
  else localStorage.removeItem(CART_KEY);
  for (const listener of listeners) listener(cart);
}

export function onCartChange(listener) {
  listeners.add(listener);
}

// Another tab changed the cart: tell this page too.
window.addEventListener('storage', (event) => {
  if (event.key === CART_KEY) for (const listener of listeners) listener(readCart());
});

export function cartSize(cart = readCart()) {
  return cart.biobanks.length;
}

export function inCart(biobankId, collectionId = null, cart = readCart()) {
  const entry = cart.biobanks.find((b) => b.id === biobankId);
  if (!entry) return false;
  return collectionId === null ? true : entry.collections.includes(collectionId);
}

/**
 * Add a biobank (or one of its collections) for the search `search`. A request carries
 * one question: adding from another search replaces the cart's search; returns true then.
 */
export function addToCart(biobankId, search, collectionId = null) {
  const cart = readCart();
  let replaced = false;
  if (search !== null && search !== cart.search) {
    replaced = cart.biobanks.length > 0 && cart.search !== '';
    cart.search = search;
  }
  let entry = cart.biobanks.find((b) => b.id === biobankId);
  if (!entry) {
    entry = { id: biobankId, collections: [] };
    cart.biobanks.push(entry);
  }
  if (collectionId !== null && !entry.collections.includes(collectionId)) entry.collections.push(collectionId);
  save(cart);
  return replaced;
}

/** Remove a biobank, or only one of its collections (the biobank stays, as a whole). */
export function removeFromCart(biobankId, collectionId = null) {
  const cart = readCart();
  if (collectionId === null) cart.biobanks = cart.biobanks.filter((b) => b.id !== biobankId);
  else {
    const entry = cart.biobanks.find((b) => b.id === biobankId);
    if (entry) entry.collections = entry.collections.filter((c) => c !== collectionId);
  }
  save(cart);
}

export function clearCart() {
  save(empty());
}

/** Show the number of chosen biobanks in the header's cart link. */
export function showCartCount() {
  const badge = document.getElementById('cart-count');
  if (!badge) return;
  const n = cartSize();
  badge.textContent = n ? String(n) : '';
  badge.hidden = n === 0;
}

onCartChange(() => showCartCount());
