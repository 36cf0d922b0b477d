// The printable prescription's print button: a module, not an inline
// `onclick`, because the pages' Content-Security-Policy allows no inline script.
document.getElementById('print').addEventListener('click', () => window.print());
