// Shared by every console: sign-out.
document.getElementById('logout')?.addEventListener('click', async () => {
  await fetch('/api/auth/logout', { method: 'POST' });
  window.location.assign('/');
});

// Failed sign-ins for this account since the last one (set by login.js).
const failed = Number(sessionStorage.getItem('careline_failed_attempts') || 0);
if (failed > 0) {
  sessionStorage.removeItem('careline_failed_attempts');
  const note = document.createElement('p');
  note.id = 'failed-attempts';
  note.className = 'error';
  note.setAttribute('role', 'alert');
  note.textContent = document.documentElement.lang === 'hi'
    ? `आपके पिछले साइन-इन के बाद से आपके खाते में ${failed} बार गलत पासवर्ड दिया गया। अगर यह आप नहीं थे, तो अपने सुपरवाइज़र को बताएँ।`
    : `${failed} failed sign-in attempts on your account since your last sign-in. If that was not you, tell your supervisor.`;
  document.getElementById('console-title')?.after(note);
}
