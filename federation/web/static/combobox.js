// The disease autocomplete: an ARIA 1.2 combobox with a listbox popup. Suggestions come
// from `diseases(text)` (codes, English and Japanese names, kana readings); each shows its
// place in the ICD-10 hierarchy, named in the reader's language.

import { request } from './api.js';
import { debounce, fill, h } from './dom.js';
import { currentLanguage, formatNumber, t } from './i18n.js';
import { disease, diseaseName, ensureNames } from './names.js';

const SUGGEST = `query Suggest($text: String!) {
  diseases(text: $text, first: 8) { code name language kind ancestors }
}`;

export function diseaseCombobox({ input, listbox, status, problem, onSelect, onText }) {
  let options = [];
  let active = -1;
  let asked = 0;

  const open = () => {
    listbox.hidden = options.length === 0;
    input.setAttribute('aria-expanded', String(!listbox.hidden));
  };
  const close = () => {
    listbox.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const highlight = (index) => {
    active = index;
    listbox.querySelectorAll('[role=option]').forEach((el, n) => {
      el.setAttribute('aria-selected', String(n === index));
      if (n === index) el.scrollIntoView({ block: 'nearest' });
    });
    if (index >= 0) input.setAttribute('aria-activedescendant', `disease-option-${index}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const choose = (index) => {
    const item = options[index];
    if (!item) return;
    close();
    input.value = '';
    onSelect(item.code);
  };

  const render = () => {
    fill(
      listbox,
      options.map((item, n) =>
        h(
          'li',
          {
            id: `disease-option-${n}`,
            role: 'option',
            'aria-selected': 'false',
            class: 'option',
            onmousedown: (event) => event.preventDefault(), // keep focus in the input
            onclick: () => choose(n),
          },
          h('span', { class: 'option-main' },
            h('span', { class: 'code', text: item.code }),
            ' ',
            h('span', { class: 'name', lang: item.language, text: item.name }),
            officialName(item)),
          h('span', { class: 'option-path', text: hierarchy(item) }),
        ),
      ),
    );
    status.textContent = options.length
      ? t('search.disease.count', { n: formatNumber(options.length) })
      : t('search.disease.nomatch');
    say(options.length ? null : 'nomatch');
    open();
  };

  // Visible beside the box: no item matches (type on, or search the words), or the server
  // did not answer (retry) — two different things to do.
  const say = (what) => {
    problem.hidden = !what;
    problem.dataset.problem = what || '';
    if (!what) {
      fill(problem);
      return;
    }
    const text = what === 'failed'
      ? t('search.disease.failed')
      : t('search.disease.nomatch.visible', { text: input.value.trim() });
    const retry = what === 'failed'
      ? h('button', { type: 'button', class: 'link', onclick: () => { input.focus(); suggest(); }, text: t('search.retry') })
      : null;
    fill(problem, h('span', { text }), retry ? ' ' : '', retry);
    problem.classList.toggle('invalid', what === 'failed');
  };

  const suggest = debounce(async () => {
    const text = input.value.trim();
    const ticket = ++asked;
    if (!text) {
      options = [];
      say(null);
      close();
      return;
    }
    const { data } = await request(SUGGEST, { text }).catch(() => ({ data: null }));
    if (ticket !== asked) return; // a newer keystroke is on its way
    if (!data || !data.diseases) {
      options = [];
      close();
      listbox.dataset.query = text;
      status.textContent = t('search.disease.failed');
      say('failed');
      return;
    }
    const found = data.diseases;
    await ensureNames(found.flatMap((d) => [d.code, ...d.ancestors]));
    if (ticket !== asked) return;
    options = found;
    active = -1;
    listbox.dataset.query = text; // which text the shown suggestions answer
    render();
  }, 180);

  input.addEventListener('input', suggest);
  input.addEventListener('keydown', (event) => {
    const count = options.length;
    switch (event.key) {
      case 'ArrowDown':
        event.preventDefault();
        if (listbox.hidden && count) open();
        if (count) highlight((active + 1) % count);
        break;
      case 'ArrowUp':
        event.preventDefault();
        if (count) highlight(active <= 0 ? count - 1 : active - 1);
        break;
      case 'Enter':
        event.preventDefault();
        if (!listbox.hidden && active >= 0) choose(active);
        else if (input.value.trim()) {
          close();
          onText(input.value.trim());
          input.value = '';
        } else onText('');
        break;
      case 'Escape':
        if (!listbox.hidden) {
          event.preventDefault();
          close();
        } else input.value = '';
        break;
      case 'Tab':
        close();
        break;
      default:
    }
  });
  input.addEventListener('blur', () => setTimeout(close, 100));
  input.addEventListener('focus', () => {
    if (options.length && input.value.trim()) open();
  });
  return { close, refresh: () => options.length && render() };
}

function officialName(item) {
  const official = diseaseName(item.code);
  if (!official || official === item.name) return null;
  return h('span', { class: 'official', text: ` — ${official}` });
}

/** "II Neoplasms › C00-C97 … › C50 Malignant neoplasm of breast", chapter first. */
export function hierarchy(item) {
  return [...item.ancestors]
    .reverse()
    .map((code) => {
      // An item without a name in the reader's language shows its code only: a long
      // English name in a Japanese path reads worse than the code.
      const known = disease(code);
      return known && known.language === currentLanguage() ? `${code} ${known.name}` : code;
    })
    .join(' › ');
}

