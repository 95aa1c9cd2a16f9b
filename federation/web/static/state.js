// The search as a URL query string, so a shared or bookmarked URL restores it:
// /?disease=C50&material=PLASMA&age_min=40&purpose=DISEASE&ethics=1

const LISTS = {
  diseases: 'disease',
  materials: 'material',
  sexes: 'sex',
  biobanks: 'biobank',
  collectionTypes: 'collection_type',
  dataCategories: 'data_category',
  // The biobanks' countries (`country` is the research purpose's country).
  countries: 'biobank_country',
  // Codes the reader removed from what the free text resolved to.
  textExclude: 'text_exclude',
};
const FLAGS = {
  commercial: 'commercial',
  forProfit: 'for_profit',
  ethicsApproval: 'ethics',
  genetic: 'genetic',
};
export const PURPOSE_KINDS = ['DISEASE', 'HEALTH', 'ANCESTRY', 'METHODS', 'GENERAL', 'CLINICAL_CARE'];

export function emptyState() {
  return {
    diseases: [],
    text: '',
    textExclude: [],
    materials: [],
    sexes: [],
    biobanks: [],
    collectionTypes: [],
    dataCategories: [],
    countries: [],
    ageMin: null,
    ageMax: null,
    purpose: null,
  };
}

function age(value) {
  if (value === null || value === '') return null;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 && n <= 150 ? n : null;
}

export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  for (const [field, name] of Object.entries(LISTS)) {
    state[field] = [...new Set(params.getAll(name).filter(Boolean))];
  }
  state.text = (params.get('text') || '').slice(0, 200);
  state.ageMin = age(params.get('age_min'));
  state.ageMax = age(params.get('age_max'));
  const kind = params.get('purpose');
  if (PURPOSE_KINDS.includes(kind)) {
    state.purpose = {
      kind,
      diseases: params.getAll('purpose_disease').filter(Boolean),
      country: (params.get('country') || '').toUpperCase().slice(0, 2),
    };
    for (const [field, name] of Object.entries(FLAGS)) state.purpose[field] = params.get(name) === '1';
  }
  return state;
}

export function writeState(state) {
  const params = new URLSearchParams();
  for (const [field, name] of Object.entries(LISTS)) {
    for (const value of state[field]) params.append(name, value);
  }
  if (state.text) params.set('text', state.text);
  if (state.ageMin !== null) params.set('age_min', state.ageMin);
  if (state.ageMax !== null) params.set('age_max', state.ageMax);
  if (state.purpose) {
    params.set('purpose', state.purpose.kind);
    for (const code of state.purpose.diseases) params.append('purpose_disease', code);
    if (state.purpose.country) params.set('country', state.purpose.country);
    for (const [field, name] of Object.entries(FLAGS)) if (state.purpose[field]) params.set(name, '1');
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

/** The GraphQL `SampleQuery` for a state (only the fields that are set). */
export function sampleQuery(state) {
  const query = {};
  for (const field of Object.keys(LISTS)) if (state[field].length) query[field] = state[field];
  if (!state.text) delete query.textExclude; // nothing to leave out without a text
  if (state.text) query.text = state.text;
  if (state.ageMin !== null) query.ageMin = state.ageMin;
  if (state.ageMax !== null) query.ageMax = state.ageMax;
  return query;
}

/** The GraphQL `ResearchPurpose` for a state, or null. */
export function researchPurpose(state) {
  const purpose = state.purpose;
  if (!purpose) return null;
  const declared = { kind: purpose.kind };
  const diseases = purpose.diseases.length ? purpose.diseases : state.diseases;
  if (diseases.length) declared.diseases = diseases;
  if (purpose.country) declared.country = purpose.country;
  for (const field of Object.keys(FLAGS)) declared[field] = Boolean(purpose[field]);
  return declared;
}
